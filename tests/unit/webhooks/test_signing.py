"""Standard Webhooks signatures: a receiver using the `standardwebhooks` library accepts ours."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.webhooks.events import WebhookEvent, wants_event
from shared.webhooks.signing import secret_key, sign, signed_headers
from tests.webhook_receiver import SECRET_A, SECRET_B

BODY = json.dumps({"event": "completed", "id": "job-1", "output": "héllo"}).encode()


def test_signature_is_hmac_sha256_of_id_timestamp_body_keyed_by_decoded_secret() -> None:
    key = base64.b64decode(SECRET_A.removeprefix("whsec_"))
    expected = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(secret_key(SECRET_A), "msg_1", 1700000000, BODY) == (
        "v1," + base64.b64encode(expected).decode()
    )


def test_the_standardwebhooks_library_verifies_our_headers() -> None:
    headers = signed_headers("msg_abc", int(time.time()), BODY, [SECRET_A])
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(SECRET_A).verify(BODY, headers) == json.loads(BODY)


def test_rotation_sends_one_signature_per_secret_each_valid_with_its_own_secret() -> None:
    headers = signed_headers("msg_rot", int(time.time()), BODY, [SECRET_A, SECRET_B])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret, signature in zip((SECRET_A, SECRET_B), signatures, strict=True):
        alone = {**headers, "webhook-signature": signature}
        Webhook(secret).verify(BODY, alone)
    other = "whsec_" + base64.b64encode(b"not one of ours").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(BODY, headers)


def test_a_changed_body_or_id_does_not_verify() -> None:
    headers = signed_headers("msg_x", int(time.time()), BODY, [SECRET_A])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY.replace(b"job-1", b"job-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY, {**headers, "webhook-id": "msg_y"})


def test_no_secret_means_no_signature_header() -> None:
    assert "webhook-signature" not in signed_headers("msg_1", 1, BODY, [])


@pytest.mark.parametrize("secret", ["whsec_", "whsec_***", "secret"])
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_key(secret)


def test_secrets_without_base64_padding_are_accepted() -> None:
    unpadded = SECRET_A.rstrip("=")
    assert secret_key(unpadded) == secret_key(SECRET_A)


def test_completed_is_always_wanted_the_rest_only_when_asked() -> None:
    assert wants_event((), WebhookEvent.COMPLETED)
    assert not wants_event((), WebhookEvent.START)
    assert wants_event(("output",), WebhookEvent.OUTPUT)
    assert not wants_event(("output",), WebhookEvent.START)
    assert wants_event(None, WebhookEvent.START)
