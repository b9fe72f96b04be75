"""The audit where pip-audit cannot run: advisories that PyPI lists for each package's newest
release, checked against the locked versions.

pip-audit reads a version's advisories from PyPI's per-version JSON
(https://pypi.org/pypi/<name>/<version>/json) or from api.osv.dev. Some networks (this
project's build machines among them) serve neither, and pip-audit --strict then fails on the
first package without having checked anything. A project page (https://pypi.org/pypi/<name>/json)
is served, and lists the advisories that affect the newest release. So where the per-version
API does not answer, `make audit` runs this instead: a locked version that is its package's
newest is checked (an advisory not accepted in requirements/audit-ignore.txt fails the audit),
and every other one is listed as not checked. It checks less than pip-audit, and says so.

    python scripts/audit_newest.py --probe             exit 0 when pip-audit's service answers
    python scripts/audit_newest.py --ignore FILE LOCK...
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

PYPI = "https://pypi.org/pypi"
# A release that will always exist: whether per-version pages are served at all.
PROBE = f"{PYPI}/pip/24.0/json"
TIMEOUT_S = 30
ATTEMPTS = 3
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;+]+)", re.M)


def fetch_json(url: str) -> Any | None:
    """The JSON document at url; None when it does not exist (404) or cannot be fetched."""
    for _ in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
        except (urllib.error.URLError, TimeoutError, ValueError):
            pass
    return None


def locked_versions(locks: list[Path]) -> list[tuple[str, Version]]:
    """Every (package, version) pinned in the locks, a local version's suffix dropped (torch's
    +cpu build is the release it was built from). The locks of separate venvs may pin one
    package at two versions: both are audited."""
    pins = {
        (canonicalize_name(name), Version(version))
        for lock in locks
        for name, version in PIN.findall(lock.read_text(encoding="utf-8"))
    }
    return sorted(pins)


def accepted_ids(ignore_file: Path) -> set[str]:
    """The advisory IDs of audit-ignore.txt (first word of each line that is not a comment)."""
    lines = ignore_file.read_text(encoding="utf-8").splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


def newest_release(name: str) -> tuple[Version, list[dict[str, Any]]] | None:
    """The package's newest release and the advisories PyPI lists for it; None when its
    project page cannot be fetched."""
    page = fetch_json(f"{PYPI}/{name}/json")
    if page is None:
        return None
    return Version(page["info"]["version"]), list(page.get("vulnerabilities") or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="store_true", help="only test pip-audit's service")
    parser.add_argument("--ignore", type=Path, help="accepted advisories (audit-ignore.txt)")
    parser.add_argument("locks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.probe:
        return 0 if fetch_json(PROBE) is not None else 1
    if not args.locks or args.ignore is None:
        parser.error("give --ignore and at least one lock")
    pins = locked_versions(args.locks)
    accepted = accepted_ids(args.ignore)
    names = sorted({name for name, _ in pins})
    with ThreadPoolExecutor(max_workers=8) as pool:
        newest = dict(zip(names, pool.map(newest_release, names), strict=True))
    checked, newer, unreachable, findings = [], [], [], []
    for name, version in pins:
        pin = f"{name}=={version}"
        release = newest[name]
        if release is None:
            unreachable.append(pin)
            continue
        if release[0] != version:
            newer.append(pin)
            continue
        checked.append(pin)
        for advisory in release[1]:
            if not {advisory["id"], *advisory.get("aliases", [])} & accepted:
                fixed = ", ".join(advisory.get("fixed_in") or []) or "no fixed release"
                findings.append(f"  {pin}: {advisory['id']} (fixed in: {fixed})")
    print(
        "pip-audit's advisory service (PyPI's per-version JSON, OSV) does not answer from here: "
        "checked the advisories PyPI lists for each package's newest release instead."
    )
    print(f"{len(checked)} of {len(pins)} locked versions are their package's newest: checked.")
    if newer:
        print(f"{len(newer)} not checked (a newer release exists): {', '.join(newer)}")
    if unreachable:
        print(
            f"{len(unreachable)} not checked (project page unreachable): {', '.join(unreachable)}"
        )
    if findings:
        print(f"{len(findings)} known vulnerabilities not accepted in {args.ignore}:")
        print("\n".join(findings))
        return 1
    print("No known vulnerability in the checked versions beyond those accepted.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
