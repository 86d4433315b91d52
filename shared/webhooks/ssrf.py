"""Which URLs a webhook may target (the SSRF guard), and the HTTP client that enforces it.

A webhook URL is checked twice: at submit (`validate_webhook_url`, a 422 naming `webhook`) and
again when connecting (`make_webhook_client`), against the very address the socket connects to,
so a name that resolves to a public address at submit and to a private one later (DNS
rebinding) still cannot reach inside our network.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.settings import Settings

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]

MAX_URL_CHARS: Final = 2048
USER_AGENT: Final = "lstmgen-webhooks/1"


class WebhookURLError(ValueError):
    """A webhook URL that must not be used (malformed, or an address we refuse)."""


# --- which addresses are off limits --------------------------------------------------------------

_V4_REFUSED: Final[tuple[tuple[IPv4Network, str], ...]] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_REFUSED: Final[tuple[tuple[IPv6Network, str], ...]] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (IPv4-compatible)"),
        ("64:ff9b:1::/48", "reserved (local-use NAT64)"),
        ("100::/64", "reserved (discard-only)"),
        ("2001:db8::/32", "reserved (documentation)"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64: Final = ip_network("64:ff9b::/96")
_IPV4_TRANSLATED: Final = ip_network("::ffff:0:0:0/96")


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """Return the IPv4 address an IPv6 form carries (mapped, translated, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Return why a webhook may not connect to this address (e.g. "loopback"), or None."""
    if isinstance(address, IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            reason = refusal_reason(inner)
            return f"{reason} (IPv4 in IPv6 form)" if reason else None
        networks: Sequence[tuple[IPv4Network | IPv6Network, str]] = _V6_REFUSED
    else:
        networks = _V4_REFUSED
    for network, reason in networks:
        if address in network:
            return reason
    # Anything else IANA lists as not globally reachable (special-purpose blocks).
    return None if address.is_global else "not globally routable"


# --- reading hosts -------------------------------------------------------------------------------

_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _v4_part(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    return int(part, 8) if part.startswith("0") else int(part)


def parse_ipv4_number_form(host: str) -> IPv4Address | None:
    """Return the address of a numeric IPv4 host in any inet_aton form (2130706433, 0x7f.1)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(part) for part in parts):
        return None
    values = [_v4_part(part) for part in parts]
    # The last part fills every byte the earlier parts leave (127.1 is 127.0.0.1).
    last_bits = 8 * (5 - len(parts))
    if any(value > 255 for value in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    number = values[-1]
    for index, value in enumerate(values[:-1]):
        number |= value << (24 - 8 * index)
    return IPv4Address(number)


def parse_ip_literal(host: str) -> IPAddress | None:
    """Return the address a host names literally (IPv6, dotted, decimal, octal, hex), or None."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return parse_ipv4_number_form(host)


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name with the system resolver, addresses in its preferred order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_host(host: str, port: int, resolver: Resolver = system_resolver) -> list[IPAddress]:
    """Return the addresses a host stands for: itself if literal, else what the resolver says."""
    literal = parse_ip_literal(host)
    return [literal] if literal is not None else list(resolver(host, port))


def refuse_off_limits(host: str, addresses: Sequence[IPAddress]) -> None:
    """Raise WebhookURLError if any address of a host is off limits."""
    verb = "is" if parse_ip_literal(host) is not None else "resolves to"
    for address in addresses:
        reason = refusal_reason(address)
        if reason is not None:
            raise WebhookURLError(
                f"host {host!r} {verb} {address}, a {reason} address; webhooks may not target it"
            )


def safe_addresses(host: str, port: int, resolver: Resolver = system_resolver) -> list[IPAddress]:
    """Resolve a host and refuse it (WebhookURLError) if it does not resolve or is off limits."""
    try:
        addresses = resolve_host(host, port, resolver)
    except (OSError, UnicodeError) as error:
        raise WebhookURLError(f"host {host!r} does not resolve ({error})") from error
    if not addresses:
        raise WebhookURLError(f"host {host!r} does not resolve")
    refuse_off_limits(host, addresses)
    return addresses


# --- submit-time check ---------------------------------------------------------------------------


def validate_webhook_url(
    url: str, settings: Settings, resolver: Resolver = system_resolver
) -> None:
    """Refuse a webhook URL that is not http(s) to a public host (WebhookURLError)."""
    if not isinstance(url, str) or not url:
        raise WebhookURLError("must be an http:// or https:// URL")
    if len(url) > MAX_URL_CHARS:
        raise WebhookURLError(f"must be at most {MAX_URL_CHARS} characters")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise WebhookURLError("must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookURLError("must be an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise WebhookURLError(f"has an invalid port ({error})") from error
    host = parts.hostname
    if not host:
        raise WebhookURLError("must name a host")
    if not settings.webhook_allow_private:
        safe_addresses(host, port, resolver)
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:
        raise WebhookURLError(f"is not a valid URL ({error})") from error


# --- connect-time check --------------------------------------------------------------------------


class GuardedBackend(httpcore.SyncBackend):
    """A network backend that connects only to checked addresses of the host it is given.

    httpcore still sends the original Host header and TLS server name; only the socket's
    destination is pinned to an address we resolved and checked ourselves.
    """

    def __init__(self, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self._allow_private = allow_private
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve once, refuse off-limits addresses, connect to the first that answers."""
        try:
            addresses = resolve_host(host, port, self._resolver)
        except (OSError, UnicodeError) as error:
            # A resolver failure may pass: it is retried like a refused connection.
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        if not self._allow_private:
            refuse_off_limits(host, addresses)
        last_error: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport whose every connection goes through `GuardedBackend`."""

    def __init__(self, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        # trust_env=False: a proxy from the environment would connect for us, unchecked.
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=10,
            max_keepalive_connections=0,
            network_backend=GuardedBackend(allow_private, resolver),
        )


def make_webhook_client(settings: Settings, resolver: Resolver = system_resolver) -> httpx.Client:
    """Return an HTTP client for deliveries: checked addresses, no redirects, no proxies."""
    return httpx.Client(
        transport=GuardedTransport(settings.webhook_allow_private, resolver),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.webhook_timeout_s),
        headers={"user-agent": USER_AGENT, "content-type": "application/json"},
    )


def warn_if_private_allowed(settings: Settings, log: logging.Logger) -> None:
    """Say loudly at start that webhooks may reach private addresses, when they may."""
    if settings.webhook_allow_private:
        log.warning(
            "LSTMGEN_WEBHOOK_ALLOW_PRIVATE is set: webhooks may target loopback and private "
            "addresses (for local development and tests only)"
        )
