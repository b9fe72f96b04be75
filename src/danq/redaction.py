"""Secrets kept out of what is written: URIs as they may appear in files, logs and messages.

A URI can carry a login (https://user:password@host) or a token in its query (?token=...,
signed URLs' ?X-Goog-Signature=...). What the project writes or prints shows such a URI with
those parts replaced by '***'; the user name stays, it says whose login was used.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret", "key", "signature")
MASK = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def _is_secret_key(key: str) -> bool:
    return key.lower().endswith(SECRET_QUERY_KEYS)


def redact_uri(uri: str) -> str:
    """uri with its password or token replaced by '***'."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if _is_secret_key(key) else pair
        for pair in parts.query.split("&")
        if pair
        for key in [pair.partition("=")[0]]
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # unchanged, and not re-joined: urlunsplit turns sqlite:/// into sqlite:/
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def uri_secrets(uri: str) -> list[str]:
    """The secret parts of uri as they appear in it: its password (or user-only login) and the
    values of its secret query keys, raw and percent-decoded."""
    parts = urllib.parse.urlsplit(uri)
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, has_password, password = userinfo.partition(":")
        found.append(password if has_password else user)
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if _is_secret_key(key):
            found.append(value)
    secrets = {s for raw in found if raw for s in (raw, urllib.parse.unquote(raw))}
    return sorted(secrets, key=len, reverse=True)  # longest first: no partial replacement


def redact_text(text: str, uris: Iterable[str] = ()) -> str:
    """text with every URI in it redacted, and every secret of the given uris replaced
    wherever it appears (libraries quote a request's path and query without the scheme)."""
    text = _URL.sub(lambda found: redact_uri(found.group()), text)
    for uri in uris:
        for secret in uri_secrets(uri):
            text = text.replace(secret, MASK)
    return text
