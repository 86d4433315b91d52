"""Standard Webhooks v1 signing: `whsec_` secrets, one signature per secret while rotating."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a `whsec_<base64>` secret, or raise ValueError."""
    if not secret.startswith("whsec_"):
        raise ValueError("webhook secrets must look like whsec_<base64>")
    encoded = secret.removeprefix("whsec_")
    try:
        # Receivers accept the base64 part with or without padding; so do we.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError as error:
        raise ValueError("a webhook secret is not valid base64 after whsec_") from error
    if not key:
        raise ValueError("a webhook secret is empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return one `v1,<base64 HMAC-SHA256>` signature of "{id}.{timestamp}.{body}"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """Return the Standard Webhooks headers; one signature per secret, for key rotation."""
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        signatures = (sign(secret_key(secret), msg_id, timestamp, body) for secret in secrets)
        headers["webhook-signature"] = " ".join(signatures)
    return headers
