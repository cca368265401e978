"""The fetcher: the one place where tidings touches the network, and so its security boundary.

Every URL a user, a feed or a page hands us is untrusted. Before any byte leaves the machine:
- only http and https go to the network; local files are read only when the caller allows them
  (the CLI does, the web UI never does), and a redirect can never lead to a file;
- the host is resolved and refused if ANY of its addresses is private, loopback, link-local, multicast,
  reserved or unspecified (IPv4-mapped and 6to4/Teredo IPv6 forms included), unless the caller
  allowed private addresses or listed that exact ``host:port``;
- redirects are followed by hand, one hop at a time, and every hop is checked again.

DNS rebinding (TOCTOU): a name can resolve to a public address when checked and to 127.0.0.1 when
connected. So the check that matters happens at connect time: the transport's network backend resolves
the name itself, refuses the connection if any address is not public, and connects to the very
address it checked (TLS still verifies the certificate against the host name). ``check_url`` runs the
same test earlier, per hop, so that a refusal carries the URL and a clear reason. The policy and those
checks live in :mod:`tidings.sources.urlcheck`, which does not import httpx.

httpx exceptions are mapped to ``FetchError`` reasons here; nothing above this module sees httpx.
"""

from __future__ import annotations

import email.utils
import mimetypes
import random
import threading
import time
import urllib.robotparser
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from ..errors import FetchError
from .urlcheck import FetchPolicy, Refused, check_http, check_url, checked_addresses, local_path

RETRY_AFTER_CAP = 30.0  # never let a server park us for long; a later run can try again
_BACKOFF_CAP = 30.0
_REDIRECTS = {301, 302, 303, 307, 308}
Job = TypeVar("Job")
Outcome = TypeVar("Outcome")
_SENSITIVE_HEADERS = {"authorization", "cookie", "proxy-authorization"}


@dataclass
class FetchResult:
    url: str  # what was asked for
    final_url: str  # where it was found, after redirects (a file:// URI for local files)
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased keys
    content: bytes = b""
    content_type: str | None = None  # the full header value, charset included, for decoding


class _RetryableError(FetchError):
    """A transient FetchError that says how long the server asked us to wait."""

    def __init__(self, url: str, reason: str, message: str, retry_after: float | None) -> None:
        super().__init__(url, reason, message, transient=True)
        self.retry_after = retry_after


# --- connecting: the address checks of urlcheck, at connect time ---------------------------------


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects in one step, so the address we checked is the one we use."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, self._policy)
        for address in addresses[:-1]:
            try:
                return self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                               socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # try the next address, as socket.create_connection would
        return self._inner.connect_tcp(addresses[-1], port, timeout=timeout, local_address=local_address,
                                       socket_options=socket_options)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise Refused("bad_scheme", "unix sockets are never fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool rebuilt on the guarded network backend.

    httpx offers no public hook for the backend; ``_pool`` is the one private name we touch, and it has
    been stable since httpx 0.18. The check below makes an incompatible httpx fail loudly, not open."""

    def __init__(self, policy: FetchPolicy, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise RuntimeError("unsupported httpx version: cannot install the address guard")
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


def make_client(policy: FetchPolicy, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for ``fetch``: guarded transport, no redirects, no environment proxies.

    A ``transport`` given here (tests, or another stack) replaces the connect-time guard; ``check_url``
    still runs on every hop."""
    limits = httpx.Limits(max_connections=max(policy.concurrency, 1),
                          max_keepalive_connections=max(policy.concurrency, 1))
    return httpx.Client(
        transport=transport or _GuardedTransport(policy, limits),
        timeout=httpx.Timeout(connect=policy.connect_timeout, read=policy.read_timeout,
                              write=policy.read_timeout, pool=policy.connect_timeout + policy.read_timeout),
        headers={
            "User-Agent": policy.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8",
        },
        follow_redirects=False,
        trust_env=False,  # an environment proxy would connect on our behalf, past the guard
    )


# --- fetching ------------------------------------------------------------------------------------


def _read_file(url: str, policy: FetchPolicy) -> FetchResult:
    check_url(url, policy)
    path = local_path(url)
    if path is None:  # check_url passed, so this is a path; keep the type checker honest
        raise FetchError(url, "bad_scheme", "not a local file")
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise FetchError(url, "too_large", f"{size} bytes, more than the {policy.max_bytes} allowed")
        content = path.read_bytes()
    except FileNotFoundError as exc:
        raise FetchError(url, "file_not_found", str(exc)) from exc
    except OSError as exc:
        raise FetchError(url, "file_error", f"{path}: {exc.strerror or exc}") from exc
    content_type, _ = mimetypes.guess_type(path.name)
    return FetchResult(url=url, final_url=path.resolve().as_uri(), status=200, headers={}, content=content,
                       content_type=content_type)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _status_error(url: str, response: httpx.Response) -> FetchError:
    code = response.status_code
    reason = f"http_{code}"
    message = f"HTTP {code} {response.reason_phrase}".strip()
    if code == 429:
        return _RetryableError(url, reason, message, _retry_after(response.headers.get("retry-after")))
    if code >= 500:
        return _RetryableError(url, reason, message, _retry_after(response.headers.get("retry-after")))
    return FetchError(url, reason, message)


def _read_body(url: str, response: httpx.Response, policy: FetchPolicy, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(url, "too_large", f"{declared} bytes declared, more than the {policy.max_bytes} allowed")
    body = bytearray()
    # Counted after decompression, so a small gzip bomb is caught too (one raw chunk of at most 64 KB
    # can expand to about 64 MB before we get to count it; that is the bound).
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise FetchError(url, "too_large", f"more than the {policy.max_bytes} bytes allowed")
        if time.monotonic() > deadline:
            raise FetchError(url, "timeout", f"not finished within {policy.total_timeout:g} s", transient=True)
    return bytes(body)


def _fetch_once(url: str, policy: FetchPolicy, headers: dict[str, str], client: httpx.Client) -> FetchResult:
    deadline = time.monotonic() + policy.total_timeout
    current, hops = url, 0
    while True:
        try:
            check_http(current, policy)
            with client.stream("GET", current, headers=headers) as response:
                status = response.status_code
                if status in _REDIRECTS and response.headers.get("location"):
                    hops += 1
                    if hops > policy.max_redirects:
                        raise FetchError(url, "too_many_redirects", f"more than {policy.max_redirects} redirects")
                    target = urljoin(current, response.headers["location"].strip())
                    if urlsplit(target).netloc.lower() != urlsplit(current).netloc.lower():
                        headers = {k: v for k, v in headers.items() if k.lower() not in _SENSITIVE_HEADERS}
                    current = urlunsplit(urlsplit(target)._replace(fragment=""))
                    continue
                result_headers = {k.lower(): v for k, v in response.headers.items()}
                if status == 304:  # feed polling: "not modified" is an answer, not an error
                    return FetchResult(url, current, status, result_headers, b"", response.headers.get("content-type"))
                if status >= 300:  # errors, and the odd 3xx that is no redirect (300, 305, no Location)
                    raise _status_error(url, response)
                content = _read_body(url, response, policy, deadline)
                return FetchResult(url, str(response.url), status, result_headers, content,
                                   response.headers.get("content-type"))
        except Refused as exc:
            # Errors are reported against the URL asked for, which is what the store knows.
            where = "" if current == url else f"redirected to {current}: "
            raise FetchError(url, exc.reason, where + exc.message, transient=exc.transient) from None
        except httpx.TimeoutException as exc:
            raise FetchError(url, "timeout", f"timed out ({type(exc).__name__})", transient=True) from None
        except httpx.ConnectError as exc:
            raise FetchError(url, "connect_error", f"cannot connect: {exc}", transient=True) from None
        except httpx.RemoteProtocolError as exc:
            raise FetchError(url, "protocol_error", f"bad HTTP response: {exc}", transient=True) from None
        except httpx.DecodingError as exc:
            raise FetchError(url, "decode_error", f"cannot decode the body: {exc}") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchError(url, "bad_url", str(exc)) from None
        except httpx.TransportError as exc:  # ReadError, WriteError, ... : the connection broke
            raise FetchError(url, "connect_error", f"connection failed: {exc}", transient=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(url, "http_error", str(exc)) from None


def _backoff(policy: FetchPolicy, attempt: int, error: FetchError) -> float:
    asked = getattr(error, "retry_after", None)
    if asked is not None:
        return float(asked)
    # Exponential with jitter, so that a crowd of workers that failed together does not retry together.
    return min(policy.backoff_base * (2**attempt) * random.uniform(0.5, 1.5), _BACKOFF_CAP)


HostGate = Callable[[str, int], AbstractContextManager[object]]
"""``gate(host, slots)`` is held around each request to ``host``: at most ``slots`` at a time."""

_host_gate: HostGate | None = None


def set_host_gate(gate: HostGate | None) -> None:
    """Share per-host politeness beyond this process: the queue workers install one backed by the
    database, so ``per_host_concurrency`` holds across all of them together (``tidings.queue``)."""
    global _host_gate  # noqa: PLW0603 - one process-wide setting, installed once by ``tidings worker``
    _host_gate = gate


def fetch(url: str, policy: FetchPolicy, *, headers: dict[str, str] | None = None,
          client: httpx.Client | None = None) -> FetchResult:
    """Fetch one URL (or local file, when allowed). Raises FetchError; transient ones are retried
    ``policy.retries`` times first. A 304 is returned, not raised."""
    url = url.strip()
    if local_path(url) is not None:
        return _read_file(url, policy)
    own = client is None
    http = client if client is not None else make_client(policy)
    try:
        attempt = 0
        while True:
            gate = _host_gate(_host_of(url), max(policy.per_host_concurrency, 1)) if _host_gate else nullcontext()
            try:
                with gate:
                    return _fetch_once(url, policy, dict(headers or {}), http)
            except FetchError as exc:
                if not exc.transient or attempt >= policy.retries:
                    raise
                time.sleep(_backoff(policy, attempt, exc))
                attempt += 1
    finally:
        if own:
            http.close()


def _host_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{(parts.hostname or '').lower()}:{parts.port or ''}" if parts.scheme else ""
    except ValueError:
        return ""


def map_per_host(
    jobs: Iterable[Job],
    url_of: Callable[[Job], str],
    work: Callable[[Job], Outcome],
    policy: FetchPolicy,
    *,
    when_idle: Callable[[], None] | None = None,
) -> Iterator[tuple[Job, Outcome | FetchError]]:
    """Run ``work`` on ``policy.concurrency`` threads, at most ``policy.per_host_concurrency`` jobs at
    a time per host of ``url_of(job)``, and yield ``(job, outcome or error)`` as each completes. Page
    fetches and feed polls share it, so a site with hundreds of feeds is polled as politely as one
    with hundreds of pages. Never raises for one job: a bug costs that job, not the run.

    ``when_idle`` runs once nothing started is still running: at the end, or after the consumer
    stopped early and the jobs already running have finished (a shared client closes there)."""
    queues: dict[str, deque[Job]] = {}
    for job in jobs:
        queues.setdefault(_host_of(url_of(job)), deque()).append(job)
    if not queues:
        if when_idle is not None:
            when_idle()
        return
    per_host = max(policy.per_host_concurrency, 1)
    overall = max(policy.concurrency, 1)
    in_flight: dict[str, int] = dict.fromkeys(queues, 0)
    running: dict[Future[Outcome], tuple[Job, str]] = {}
    pool = ThreadPoolExecutor(max_workers=overall, thread_name_prefix="tidings-fetch")

    def submit_ready() -> None:
        # Round-robin over hosts, so one big site does not starve the others.
        progressed = True
        while progressed and len(running) < overall:
            progressed = False
            for host, queue in queues.items():
                if queue and in_flight[host] < per_host and len(running) < overall:
                    job = queue.popleft()
                    running[pool.submit(work, job)] = (job, host)
                    in_flight[host] += 1
                    progressed = True

    try:
        submit_ready()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job, host = running.pop(future)
                in_flight[host] -= 1
                try:
                    outcome: Outcome | FetchError = future.result()
                except FetchError as exc:
                    outcome = exc
                except Exception as exc:
                    outcome = FetchError(url_of(job), "error", f"{type(exc).__name__}: {exc}")
                submit_ready()
                yield job, outcome
    finally:
        # The consumer may stop early: drop what has not started, and call ``when_idle`` once the
        # jobs already running have finished (closing a shared client under them would fail them).
        pool.shutdown(wait=False, cancel_futures=True)
        left = [f for f in running if not f.cancelled()]
        if when_idle is not None:
            if not left:
                when_idle()
            else:
                remaining = [len(left)]
                lock = threading.Lock()

                def count_down(_: Future[Outcome]) -> None:
                    with lock:
                        remaining[0] -= 1
                        last = remaining[0] == 0
                    if last:
                        when_idle()

                for future in left:
                    future.add_done_callback(count_down)


def fetch_many(urls: Iterable[str], policy: FetchPolicy) -> Iterator[tuple[str, FetchResult | FetchError]]:
    """Fetch many URLs with :func:`map_per_host`'s limits over one shared client; yield
    ``(url, result or error)`` as each completes. Never raises for one URL."""
    client = make_client(policy)
    yield from map_per_host(urls, _same, lambda url: fetch(url, policy, client=client), policy,
                            when_idle=client.close)


def _same(url: str) -> str:
    return url


# --- robots.txt ----------------------------------------------------------------------------------

_ROBOTS_TTL = 3600.0
_robots_cache: dict[tuple[str, str], tuple[float, urllib.robotparser.RobotFileParser | None]] = {}
_robots_lock = threading.Lock()


def robots_allowed(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bool:
    """Whether robots.txt lets our user agent fetch ``url``. A robots.txt that is missing, refused
    or unreachable allows everything (RFC 9309: "unavailable"); so do local files."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return True
    origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
    key = (origin, policy.user_agent)
    now = time.monotonic()
    with _robots_lock:
        cached = _robots_cache.get(key)
    if cached is None or now - cached[0] > _ROBOTS_TTL:
        parser: urllib.robotparser.RobotFileParser | None = None
        try:
            # Same guard as any fetch, but no retries: robots.txt must not slow a run down.
            result = fetch(origin + "/robots.txt", replace(policy, retries=0, max_bytes=512 * 1024),
                           client=client)
            if result.status == 200:
                parser = urllib.robotparser.RobotFileParser()
                parser.parse(result.content.decode("utf-8", "replace").splitlines())
        except FetchError:
            parser = None
        with _robots_lock:
            if len(_robots_cache) > 1024:
                _robots_cache.clear()
            _robots_cache[key] = (now, parser)
        cached = (now, parser)
    parser = cached[1]
    return True if parser is None else parser.can_fetch(policy.user_agent, url)
