"""Secrets in URIs never reach what the project writes or prints."""

from __future__ import annotations

from danq.redaction import redact_text, uri_secrets


def test_the_secrets_of_a_uri_are_its_password_and_token_values_raw_and_decoded() -> None:
    uri = "https://ci:p%40ss@host/x?token=a%2Fb&keep=1&X-Goog-Signature=sig"
    assert set(uri_secrets(uri)) == {"p%40ss", "p@ss", "a%2Fb", "a/b", "sig"}
    assert uri_secrets("https://host/x?keep=1") == []


def test_redact_text_masks_whole_uris_and_secrets_quoted_without_the_scheme() -> None:
    uri = "https://ci:hunter2@host/bundle.tgz?token=t0k3n"
    text = (
        f"GET {uri} failed: HTTPSConnectionPool(host='host'): Max retries exceeded with url: "
        "/bundle.tgz?token=t0k3n"
    )
    redacted = redact_text(text, [uri])
    assert "hunter2" not in redacted and "t0k3n" not in redacted
    assert "https://ci:***@host/bundle.tgz?token=***" in redacted
    assert redact_text(text) != redacted  # without the URI, the quoted query keeps its token
