"""What a set of NetworkPolicies lets through, evaluated as the Kubernetes API defines it
(networking.k8s.io/v1): a pod selected by no policy of a direction is open in that direction;
once selected, a connection passes only if some rule of some selecting policy admits it, and it
must pass both the source's egress and the destination's ingress. Covers what the manifests
use (matchLabels selectors, ipBlock with except, numeric ports) and refuses the rest."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """A destination outside the cluster's pods (a Google API, the metadata server)."""

    ip: str


Peer = Pod | Address


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector {selector}: only matchLabels is evaluated here")
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        if not isinstance(peer, Address):
            return False  # pod addresses are not what these manifests' ipBlocks describe
        ip = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        excluded = any(ip in ipaddress.ip_network(c) for c in block.get("except", []))
        return ip in ipaddress.ip_network(block["cidr"]) and not excluded
    if not isinstance(peer, Pod):
        return False
    if "namespaceSelector" in rule_peer:
        namespace_ok = _matches(
            rule_peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: peer.namespace}
        )
    else:
        namespace_ok = peer.namespace == policy_namespace
    return namespace_ok and _matches(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if not isinstance(entry.get("port", 0), int):
            raise NotImplementedError(f"named port {entry}: only numeric ports are evaluated")
        if entry.get("protocol", "TCP") == protocol and entry.get("port", port) == port:
            return True
    return False


def policy_types(policy: dict[str, Any]) -> list[str]:
    """The directions a policy isolates; without policyTypes, Ingress, and Egress when it has
    egress rules."""
    default = ["Ingress"] + (["Egress"] if "egress" in policy["spec"] else [])
    types: list[str] = policy["spec"].get("policyTypes", default)
    return types


def _direction_allows(
    policies: list[dict[str, Any]],
    pod: Pod,
    direction: str,
    peer: Peer,
    port: int,
    protocol: str,
) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in policy_types(p)
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers
            )
            if peer_ok and _port_matches(rule, port, protocol):
                return True
    return False


def allows(
    policies: list[dict[str, Any]],
    source: Pod,
    destination: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether a connection from source to destination:port passes the policies."""
    if not _direction_allows(policies, source, "Egress", destination, port, protocol):
        return False
    if isinstance(destination, Address):
        return True
    return _direction_allows(policies, destination, "Ingress", source, port, protocol)
