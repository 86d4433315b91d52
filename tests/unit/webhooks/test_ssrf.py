"""Webhook URLs must not reach inside our network: refused at submit and at connect time."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

import httpx
import pytest

from shared.settings import Settings
from shared.webhooks.ssrf import (
    IPAddress,
    Resolver,
    WebhookURLError,
    make_webhook_client,
    parse_ip_literal,
    refusal_reason,
    validate_webhook_url,
)
from tests.webhook_receiver import Receiver

PUBLIC_V4 = ip_address("93.184.216.34")
STRICT = Settings(webhook_allow_private=False)
LENIENT = Settings(webhook_allow_private=True)


def fake_resolver(table: dict[str, Sequence[str]]) -> Resolver:
    """Return a resolver answering from a table (names it lacks do not resolve)."""

    def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return [ip_address(address) for address in table[host]]

    return resolve


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback (IPv4 in IPv6 form)"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:0:127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("::127.0.0.1", "reserved"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_off_limits_addresses_have_a_reason(address: str, reason: str) -> None:
    found = refusal_reason(ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("10.0x10.1", "10.16.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::1", "::1"),
    ],
)
def test_every_literal_form_of_an_address_is_read(host: str, address: str) -> None:
    assert parse_ip_literal(host) == ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "08.1.1.1", "256.1.1.1.1", "1e3"])
def test_names_are_not_mistaken_for_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1:8080/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00::1]/",
        "http://[ff02::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://10.0.0.5/",
        "http://192.168.0.1/",
        "http://100.100.100.200/",
        "http://0.0.0.0:8000/",
        "https://user:pass@127.0.0.1/",
    ],
)
def test_literal_private_targets_are_refused_at_submit(url: str) -> None:
    with pytest.raises(WebhookURLError, match="webhooks may not target it"):
        validate_webhook_url(url, STRICT)


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(WebhookURLError, match=r"'localhost' resolves to .*loopback"):
        validate_webhook_url("http://localhost:9/hook", STRICT)


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["169.254.169.254"], "link-local"),
        (["10.0.0.7"], "private"),
        (["fd00::7"], "unique-local"),
        (["::ffff:192.168.0.1"], "private"),
        (["93.184.216.34", "127.0.0.1"], "loopback"),  # one bad address is enough
    ],
)
def test_names_resolving_to_private_addresses_are_refused(
    addresses: list[str], reason: str
) -> None:
    resolver = fake_resolver({"internal.example": addresses})
    with pytest.raises(WebhookURLError, match=reason):
        validate_webhook_url("https://internal.example/hook", STRICT, resolver)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com/", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http:///hook", "host"),
        ("http://example.com:99999/", "port"),
        ("http://exa mple.com/", "spaces"),
        ("http://nowhere.invalid/", "does not resolve"),
        ("http://example.com/" + "a" * 2100, "2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    resolver = fake_resolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(WebhookURLError, match=message):
        validate_webhook_url(url, STRICT, resolver)


def test_public_names_pass_and_the_allow_flag_lets_private_ones_through() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:4700::6810:84e5"]})
    validate_webhook_url("https://hooks.example.com/x?y=1", STRICT, resolver)
    validate_webhook_url("http://127.0.0.1:8080/hook", LENIENT)
    validate_webhook_url("http://localhost/hook", LENIENT)


def test_connect_time_check_refuses_a_name_that_rebinds_to_loopback(receiver: Receiver) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ip_address(a) for a in next(answers)]

    url = f"http://rebind.example:{receiver.port}/hook"
    validate_webhook_url(url, STRICT, rebinding)  # public at submit
    with (
        make_webhook_client(STRICT, rebinding) as client,
        pytest.raises(WebhookURLError, match=r"resolves to 127\.0\.0\.1, a loopback"),
    ):
        client.post(url, content=b"{}")
    assert receiver.received() == []


def test_connect_time_check_refuses_literal_forms(receiver: Receiver) -> None:
    with make_webhook_client(STRICT) as client:
        for host in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "0x7f.1"):
            with pytest.raises(WebhookURLError, match="loopback"):
                client.post(f"http://{host}:{receiver.port}/hook", content=b"{}")
    assert receiver.received() == []


def test_the_connection_is_pinned_to_the_checked_address_with_the_original_host(
    receiver: Receiver,
) -> None:
    resolver = fake_resolver({"hooks.example": ["127.0.0.1"]})
    with make_webhook_client(LENIENT, resolver) as client:
        response = client.post(f"http://hooks.example:{receiver.port}/hook", content=b"{}")
    assert response.status_code == 200
    (got,) = receiver.received()
    assert got.headers["host"] == f"hooks.example:{receiver.port}"


def test_a_name_that_stops_resolving_is_a_connection_error_to_retry() -> None:
    resolver = fake_resolver({})
    with make_webhook_client(STRICT, resolver) as client, pytest.raises(httpx.ConnectError):
        client.post("http://gone.example/hook", content=b"{}")
