"""Every outbound URL goes through here: which URLs may be called, and a client that keeps to it.

`check_url(url, purpose=...)` is the rule for a URL as written (on save, and again before
a call); `safe_client(...)` is an httpx2 client whose transport applies the rule again to
every request and checks the addresses the host resolves to at connection time.

Invariants:
- Only https, no credentials in the URL (user:password@). Plain http only for the hosts
  listed in AGENTCONFIG_OUTBOUND_HTTP_HOSTS (a local model server in development).
- Calls go only to public addresses. Refused: loopback, private (RFC 1918, fc00::/7),
  link-local (169.254/16 with the cloud metadata address, fe80::/10), multicast,
  unspecified, reserved and every other non-global range, also when written as an
  IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address, or as a decimal/octal/hex IPv4
  (http://2130706433/, http://0177.0.0.1/). A host listed in AGENTCONFIG_OUTBOUND_HTTP_HOSTS
  or AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS may resolve to such addresses; nothing else.
- The transport resolves the host when it connects and refuses if ANY address is not
  allowed, then connects to the address it checked (the request's URL carries the IP;
  the Host header and the TLS SNI/certificate check keep the hostname), so a DNS answer
  that changes between the check and the connection cannot lead elsewhere.
- No redirect is followed, no proxy or .netrc from the environment is used, the connect
  timeout is short, and a response is read only up to `max_response_bytes` (uncompressed:
  the client asks for identity encoding and refuses a compressed reply).
- Every refusal is an OutboundRefused whose message says what was refused and why; the
  URL in a message never shows credentials.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2

from agentconfig.core.errors import ServiceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HTTP_HOSTS_SETTING = "AGENTCONFIG_OUTBOUND_HTTP_HOSTS"
PRIVATE_HOSTS_SETTING = "AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS"
CONNECT_TIMEOUT_SECONDS = 10.0
DEFAULT_PORTS = {"https": 443, "http": 80}
PUBLIC_ONLY = "outbound calls go only to public addresses"
# The metadata services of AWS, GCP, Azure, OpenStack (IPv4) and AWS (IPv6).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What inet_aton reads as IPv4: 2130706433, 0x7f.1, 0177.0.0.1, 127.1.
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


class OutboundRefused(ServiceError):
    """An outbound call was refused before it was made (or, for size, while reading)."""


class ResponseTooLarge(OutboundRefused):
    """The response was longer than the client reads."""


@dataclass(frozen=True)
class ParsedURL:
    """A URL that passed check_url."""

    url: str
    scheme: str
    host: str  # lower case, without brackets or trailing dot
    port: int  # the explicit port, or the scheme's default
    path: str  # path and query, "/" when empty
    ip: IPAddress | None  # the address when the host is written as one

    @property
    def display(self) -> str:
        """The URL without credentials, for messages."""
        return _display(self.url)


# --- addresses ---------------------------------------------------------------------


def why_not_public(address: IPAddress) -> str | None:
    """Why `address` is not a public one ("a loopback address", ...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, inner = embedded
            reason = why_not_public(inner)
            return f"{reason} ({kind} form of {inner})" if reason else None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address in METADATA_ADDRESSES:
        return "a link-local address (cloud metadata)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a special-purpose (non-global) address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` is written as (any form inet_aton reads, too), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


# --- the allow-lists -----------------------------------------------------------------


def _host_key(host: str) -> str:
    """One spelling per host: lower case, no brackets or trailing dot, IDNA, short IPv6."""
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _rule(entry: str) -> tuple[str, int | None]:
    """An allow-list entry: "host" (any port) or "host:port"; IPv6 as "[::1]:8000".

    A port that is not a number matches no port (-1), rather than every port.
    """
    entry = entry.strip()
    if entry.startswith("["):
        host, _, port = entry[1:].partition("]")
        port = port.removeprefix(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if not port:
        return _host_key(host), None
    return _host_key(host), int(port) if port.isdigit() else -1


def _listed(setting: str, host: str, port: int) -> bool:
    from django.conf import settings

    entries = getattr(settings, setting, ()) if settings.configured else ()
    key = _host_key(host)
    for entry in entries or ():
        rule_host, rule_port = _rule(str(entry))
        if rule_host == key and rule_port in (None, port):
            return True
    return False


def http_allowed(host: str, port: int) -> bool:
    """Whether plain http may be used for host:port (AGENTCONFIG_OUTBOUND_HTTP_HOSTS)."""
    return _listed(HTTP_HOSTS_SETTING, host, port)


def private_allowed(host: str, port: int) -> bool:
    """Whether host:port may resolve to non-public addresses (either allow-list)."""
    return _listed(HTTP_HOSTS_SETTING, host, port) or _listed(PRIVATE_HOSTS_SETTING, host, port)


# --- URLs ----------------------------------------------------------------------------


def _display(url: str) -> str:
    """`url` without user:password@ (never repeated in a message), at most 200 characters."""
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            parts = parts._replace(netloc="…@" + parts.netloc.rpartition("@")[2])
        shown = parts.geturl()
    except ValueError:
        shown = url
    return shown if len(shown) <= 200 else f"{shown[:199]}…"


def _private_refusal(purpose: str, url: str, host: str, address: IPAddress, why: str) -> str:
    subject = str(address) if _host_key(host) == address.compressed else f"{host} ({address})"
    return (
        f"{purpose} {_display(url)}: {subject} is {why}; {PUBLIC_ONLY}. To call a server on "
        f"your own network, list its host in {PRIVATE_HOSTS_SETTING}."
    )


def check_host(host: str, port: int, *, purpose: str, url: str = "") -> IPAddress | None:
    """Refuse a host written as a non-public address (or localhost) unless it is allow-listed.

    Names are not resolved here (that happens when connecting); returns the address when
    the host is written as one.
    """
    url = url or host
    key = _host_key(host)
    address = ip_literal(key)
    if private_allowed(host, port):
        return address
    if address is not None:
        why = why_not_public(address)
        if why:
            raise OutboundRefused(_private_refusal(purpose, url, host, address, why))
    elif key == "localhost" or key.endswith(".localhost"):
        raise OutboundRefused(
            f"{purpose} {_display(url)}: {host} names this machine (a loopback address); "
            f"{PUBLIC_ONLY}. To call a server on your own network, list its host in "
            f"{PRIVATE_HOSTS_SETTING}."
        )
    return address


def check_url(url: str, *, purpose: str) -> ParsedURL:
    """The URL, parsed, if it may be called; OutboundRefused saying why not otherwise.

    `purpose` names the URL in messages, e.g. "The evaluation endpoint".
    """
    if not isinstance(url, str) or not url:
        raise OutboundRefused(f"{purpose}: no URL given.")
    if url != url.strip() or any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise OutboundRefused(
            f"{purpose} {_display(url)!r}: contains spaces or control characters."
        )
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        hostname = parts.hostname or ""
        explicit_port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"{purpose} {_display(url)}: not a valid URL ({exc}).") from None
    if scheme not in DEFAULT_PORTS:
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        raise OutboundRefused(
            f"{purpose} {_display(url)}: {shown} is not accepted; outbound calls use https://."
        )
    if "@" in parts.netloc:
        raise OutboundRefused(
            f"{purpose} {_display(url)}: the URL contains credentials (user:password@), "
            "which would be sent to the server and shown wherever the URL is; give the key "
            "through its setting instead."
        )
    if not hostname:
        raise OutboundRefused(f"{purpose} {_display(url)}: the URL has no host.")
    host = _host_key(hostname)
    port = explicit_port or DEFAULT_PORTS[scheme]
    if scheme == "http" and not http_allowed(hostname, port):
        raise OutboundRefused(
            f"{purpose} {_display(url)}: plain http is accepted only for the hosts listed in "
            f"{HTTP_HOSTS_SETTING} (a local model server in development); use https://."
        )
    address = check_host(hostname, port, purpose=purpose, url=url)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return ParsedURL(url=url, scheme=scheme, host=host, port=port, path=path, ip=address)


# --- connecting ------------------------------------------------------------------------


def resolve_checked(parsed: ParsedURL, *, purpose: str) -> list[IPAddress]:
    """The addresses to connect to, resolved now; OutboundRefused if any is not allowed.

    Raises httpx2.ConnectError when the name does not resolve.
    """
    if parsed.ip is not None:
        addresses: list[IPAddress] = [parsed.ip]
    else:
        try:
            infos = socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpx2.ConnectError(f"cannot resolve {parsed.host}: {exc}") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpx2.ConnectError(f"cannot resolve {parsed.host}: no address")
    if not private_allowed(parsed.host, parsed.port):
        for address in addresses:
            why = why_not_public(address)
            if why:
                raise OutboundRefused(
                    _private_refusal(purpose, parsed.url, parsed.host, address, why)
                )
    return addresses


class _BoundedStream(httpx2.SyncByteStream):
    """The response body, refused once it passes `limit` bytes."""

    def __init__(self, stream: Iterable[bytes], limit: int, where: str, purpose: str) -> None:
        self._stream = stream
        self._limit = limit
        self._where = where
        self._purpose = purpose

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                self.close()
                raise ResponseTooLarge(
                    f"{self._purpose} {self._where}: the response is longer than "
                    f"{self._limit:,} bytes; reading stopped there."
                )
            yield chunk

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx2.BaseTransport):
    """Checks every request's URL and resolved addresses, connects to the checked IP."""

    def __init__(self, *, purpose: str, max_response_bytes: int) -> None:
        self._purpose = purpose
        self._max_response_bytes = max_response_bytes
        # One pool per (scheme, host, port): a TLS connection verified for one hostname
        # is never reused for another that resolves to the same address.
        self._pools: dict[tuple[str, str, int], httpx2.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _pool(self, parsed: ParsedURL) -> httpx2.HTTPTransport:
        key = (parsed.scheme, parsed.host, parsed.port)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = httpx2.HTTPTransport(retries=0)
            return pool

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        parsed = check_url(str(request.url), purpose=self._purpose)
        addresses = resolve_checked(parsed, purpose=self._purpose)
        extensions: dict[str, Any] = dict(request.extensions)
        if parsed.scheme == "https" and parsed.ip is None:
            # TLS names (and verifies the certificate for) the host, not the address.
            extensions["sni_hostname"] = request.url.raw_host.decode("ascii")
        headers = request.headers.copy()  # keeps Host: the name, not the address
        headers["Accept-Encoding"] = "identity"
        pool = self._pool(parsed)
        response: httpx2.Response | None = None
        for position, address in enumerate(addresses):
            pinned = httpx2.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                response = pool.handle_request(pinned)
                break
            except httpx2.ConnectError:
                if position == len(addresses) - 1:
                    raise
        assert response is not None  # noqa: S101 - the loop returns or raises
        return self._bounded(response, parsed)

    def _bounded(self, response: httpx2.Response, parsed: ParsedURL) -> httpx2.Response:
        where = parsed.display
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise OutboundRefused(
                f"{self._purpose} {where}: the server compressed its response ({encoding}) "
                "although asked not to; compressed responses are not read, since their size "
                "cannot be bounded."
            )
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self._max_response_bytes:
            response.close()
            raise ResponseTooLarge(
                f"{self._purpose} {where}: the response announces {int(length):,} bytes, "
                f"more than the {self._max_response_bytes:,} read."
            )
        assert isinstance(response.stream, Iterable)  # noqa: S101 - a sync transport's body
        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(response.stream, self._max_response_bytes, where, self._purpose),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


def safe_client(
    *, timeout: float, max_response_bytes: int, purpose: str = "The outbound call"
) -> httpx2.Client:
    """An httpx2 client that calls only what check_url allows, at public addresses only."""
    return httpx2.Client(
        transport=GuardedTransport(purpose=purpose, max_response_bytes=max_response_bytes),
        follow_redirects=False,
        trust_env=False,  # no proxy or .netrc from the environment
        timeout=httpx2.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
        headers={"Accept-Encoding": "identity"},
    )
