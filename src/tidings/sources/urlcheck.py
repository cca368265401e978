"""What may be fetched: the fetch policy and the URL and address checks, without the HTTP client.

Every way of adding a link or a feed asks these questions before anything is stored, and the
fetcher (:mod:`tidings.sources.http`, which imports httpx) asks them again on every hop and at
connect time. Kept apart from it so that commands that only check or store URLs (``tidings add``,
``feeds add``) do not pay for importing the client.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ..config import FetchConfig
from ..errors import FetchError

DEFAULT_USER_AGENT = FetchConfig().user_agent


@dataclass(frozen=True)
class FetchPolicy:
    """How, and what, we may fetch. Frozen: one policy is shared by all threads of a run."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    retries: int = 3
    backoff_base: float = 0.5
    allow_hosts: tuple[str, ...] = ()  # exact "host:port" entries allowed even if private/loopback
    allow_private: bool = False  # the CLI's --allow-private
    allow_files: bool = False  # local paths / file:// (CLI yes, web UI never)
    concurrency: int = 8
    per_host_concurrency: int = 2
    # A wall-clock cap on one request (all hops, the whole body): read_timeout alone lets a server
    # that drips one byte every few seconds hold a worker forever.
    total_timeout: float = 120.0

    @classmethod
    def from_config(cls, cfg: FetchConfig, **overrides: Any) -> FetchPolicy:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in cfg.model_dump().items() if k in names}
        values["allow_hosts"] = tuple(values.get("allow_hosts") or ())
        policy = cls(**values)
        if "allow_hosts" in overrides:
            overrides["allow_hosts"] = tuple(overrides["allow_hosts"])
        return replace(policy, **overrides)


class Refused(Exception):
    """Raised inside the transport, which knows the host but not the URL; ``fetch`` adds the URL."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient


# --- address checks ------------------------------------------------------------------------------


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 address reach that address: judge it instead.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public(embedded)
        if ip.is_site_local:
            return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


def _host_key(host: str, port: int) -> set[str]:
    host = host.lower().rstrip(".")
    return {f"{host}:{port}", f"[{host}]:{port}"}


def _host_allowed(host: str, port: int, policy: FetchPolicy) -> bool:
    return policy.allow_private or bool(_host_key(host, port) & {h.lower() for h in policy.allow_hosts})


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused("dns_error", f"cannot resolve {host}: {exc}", transient=True) from exc
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Refused("dns_error", f"{host} has no address", transient=True)
    return addresses


def checked_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing if any is not public (unless allowed)."""
    addresses = _resolve(host, port)
    if _host_allowed(host, port, policy):
        return addresses
    for address in addresses:
        if not _is_public(ipaddress.ip_address(address)):
            what = host if host.strip("[]") == address else f"{host} resolves to {address}, which"
            raise Refused("private_host", f"{what} is a private, loopback or link-local address; not fetched")
    return addresses


# --- URL checks ----------------------------------------------------------------------------------


def local_path(url: str) -> Path | None:
    """The path a local-file reference (``file:`` URL or bare path) names, or None for other URLs.
    Raises FetchError (bad_scheme) for a ``file:`` URL on another host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise FetchError(url, "bad_scheme", f"file URL on another host ({parts.netloc}) is not fetched")
        return Path(url2pathname(parts.path))
    if scheme == "" or (len(scheme) == 1 and url[1:2] == ":"):  # a bare path, or a Windows drive letter
        return Path(url).expanduser()
    return None



def is_local_reference(url: str) -> bool:
    """Whether fetching ``url`` would read the local disk rather than the network."""
    try:
        return local_path(url) is not None
    except FetchError:
        return True  # file://otherhost/...: not the network either (fetch refuses it)


def check_http(url: str, policy: FetchPolicy, *, resolve: bool = True) -> None:
    """Raise Refused unless ``url`` is an http(s) URL to a host we may reach.

    ``resolve=False`` checks what the URL says without asking DNS (a host written as a private address or
    ``localhost`` is still refused): for subscribing thousands of feeds at once, where a lookup per feed
    takes minutes, and hours on a machine whose resolver is unreachable. The fetch checks the resolved
    addresses again when it connects, so nothing private is ever fetched either way."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused("bad_scheme", f"only http and https URLs are fetched, not {parts.scheme or 'this'}:")
    try:
        host = parts.hostname
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise Refused("bad_url", f"malformed URL: {exc}") from exc
    if not host:
        raise Refused("bad_url", "the URL has no host")
    if _host_allowed(host, port, policy):
        return  # when allowed outright, the transport still resolves, and reports DNS errors, on connecting
    if resolve:
        checked_addresses(host, port, policy)
        return
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise Refused("private_host", f"{host} is a private, loopback or link-local address; not fetched")
    try:
        literal = ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
    except ValueError:
        return  # a name: its addresses are checked when the feed is fetched
    if not _is_public(literal):
        raise Refused("private_host", f"{host} is a private, loopback or link-local address; not fetched")


def check_url(url: str, policy: FetchPolicy, *, resolve: bool = True) -> None:
    """Raise FetchError unless ``url`` may be fetched under ``policy``.

    Reasons: bad_scheme, bad_url, file_not_found, private_host, dns_error (transient)."""
    path = local_path(url)
    if path is None:
        try:
            check_http(url, policy, resolve=resolve)
        except Refused as exc:
            raise FetchError(url, exc.reason, exc.message, transient=exc.transient) from None
        return
    if not policy.allow_files:
        raise FetchError(url, "bad_scheme", "local files are not fetched here")
    if not path.is_file():
        why = "is a directory, not a file" if path.is_dir() else "no such file"
        raise FetchError(url, "file_not_found", f"{path}: {why}")
