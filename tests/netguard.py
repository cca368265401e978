"""The off-machine traffic guard for tests (issue 9, point 6): while active, any connect or send
to a non-loopback address, and any DNS lookup of a real name, fails. Audit hooks cannot be
removed, so one is installed per process and switched by a flag."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

AUDIT = {"installed": False, "active": False}
VIOLATIONS: list[str] = []


def _literal_or_local(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return True
    try:
        socket.inet_aton(name)  # "2130706433", "0x7f.1": numeric forms the resolver never sends to DNS
    except OSError:
        return False
    return True


def audit(event: str, args: tuple[object, ...]) -> None:
    if not AUDIT["active"]:
        return
    if event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[-1]
        family = getattr(sock, "family", None)
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0]).split("%", 1)[0]
            if not ipaddress.ip_address(host).is_loopback:
                VIOLATIONS.append(f"{event} to {address}")
                raise ConnectionRefusedError(f"test guard: {event} to {address} blocked (off-machine)")
    elif event == "socket.getaddrinfo" and not _literal_or_local(args[0]):
        VIOLATIONS.append(f"DNS lookup of {args[0]!r}")
        raise socket.gaierror(socket.EAI_NONAME, "test guard: DNS lookups are blocked")


@contextmanager
def no_traffic_off_machine() -> Iterator[None]:
    if not AUDIT["installed"]:
        sys.addaudithook(audit)
        AUDIT["installed"] = True
    VIOLATIONS.clear()
    AUDIT["active"] = True
    try:
        yield
    finally:
        AUDIT["active"] = False
    assert not VIOLATIONS, f"traffic would have left the machine: {VIOLATIONS}"
