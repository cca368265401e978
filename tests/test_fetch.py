"""The fetcher against a real HTTP server on 127.0.0.1. No mocks of HTTP; DNS answers are faked
(monkeypatched getaddrinfo) only where a test needs a host name to resolve somewhere particular.

An audit hook watches every socket this module opens: a connect, send or DNS lookup that would leave
the machine fails the test, so a bug in the guard can never send traffic anywhere."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply, Request
from netguard import AUDIT, VIOLATIONS, audit, no_traffic_off_machine

from tidings.config import FetchConfig
from tidings.errors import ExtractError, FetchError
from tidings.sources import http
from tidings.sources.http import FetchResult, fetch, fetch_many, robots_allowed
from tidings.sources.urlcheck import FetchPolicy, check_url
from tidings.stages.extract import decode_html, extract

# --- the off-machine traffic guard ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _guarded() -> Iterator[None]:
    with no_traffic_off_machine():
        yield


def test_the_traffic_guard_itself() -> None:
    # Calls the hook directly, never a real connect: were the hook broken, a real one would leave.
    assert AUDIT["installed"] and AUDIT["active"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(ConnectionRefusedError):
            audit("socket.connect", (sock, ("10.0.0.1", 80)))
        audit("socket.connect", (sock, ("127.0.0.1", 80)))
        with pytest.raises(socket.gaierror):
            audit("socket.getaddrinfo", ("example.org", 80, 0, 0, 0, 0))
        audit("socket.getaddrinfo", ("127.0.0.1", 80, 0, 0, 0, 0))
        audit("socket.getaddrinfo", ("2130706433", 80, 0, 0, 0, 0))
    finally:
        sock.close()
        assert len(VIOLATIONS) == 2
        VIOLATIONS.clear()


# --- servers and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    # Two servers for the whole module: each LoopbackServer takes about half a second to shut down.
    with LoopbackServer() as first, LoopbackServer() as second:
        yield first, second


@pytest.fixture(autouse=True)
def _no_cached_robots() -> None:
    # robots.txt answers are cached per origin, and the module's servers keep their ports.
    http._robots_cache.clear()


def _fresh(server: LoopbackServer) -> LoopbackServer:
    server.routes.clear()
    server.requests.clear()
    return server


@pytest.fixture
def srv(_servers: tuple[LoopbackServer, LoopbackServer]) -> LoopbackServer:
    """A loopback server with no routes (every path a 404) and no requests recorded yet."""
    return _fresh(_servers[0])


@pytest.fixture
def other(_servers: tuple[LoopbackServer, LoopbackServer]) -> LoopbackServer:
    """A second, separate server (another port)."""
    return _fresh(_servers[1])


HTML = b"<html><head><title>Hello</title></head><body><p>" + b"Some words here. " * 20 + b"</p></body></html>"


def policy_for(srv: LoopbackServer, **overrides: object) -> FetchPolicy:
    values: dict[str, object] = dict(allow_hosts=(srv.host_port,), connect_timeout=2.0, read_timeout=2.0,
                                     retries=0, backoff_base=0.001)
    values.update(overrides)
    return FetchPolicy(**values)  # type: ignore[arg-type]


def fetch_error(url: str, policy: FetchPolicy) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, policy)
    return info.value


def html_reply(body: bytes = HTML, content_type: str = "text/html; charset=utf-8") -> Reply:
    return Reply(200, body, {"Content-Type": content_type})


# --- plain fetching ------------------------------------------------------------------------------


def test_200_html_with_headers_and_user_agent(srv: LoopbackServer) -> None:
    srv.routes.update({"/a": lambda r: html_reply()})
    result = fetch(srv.url("/a"), policy_for(srv, user_agent="tidings-test/1"))
    assert isinstance(result, FetchResult)
    assert (result.status, result.content, result.final_url) == (200, HTML, srv.url("/a"))
    assert result.content_type == "text/html; charset=utf-8"
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    assert srv.requests[0].headers["user-agent"] == "tidings-test/1"
    assert extract(result.content, result.url, result.content_type).title == "Hello"


@pytest.mark.parametrize("code", [404, 410, 403, 400])
def test_client_errors_are_recorded_and_not_transient(srv: LoopbackServer, code: int) -> None:
    srv.routes.update({"*": lambda r: Reply(code, b"nope")})
    err = fetch_error(srv.url("/missing"), policy_for(srv, retries=3))
    assert err.reason == f"http_{code}"
    assert not err.transient
    assert len(srv.requests) == 1  # not retried


def test_304_is_a_result_not_an_error(srv: LoopbackServer) -> None:
    srv.routes.update({"/feed": lambda r: Reply(304, b"", {"ETag": '"v1"'})})
    result = fetch(srv.url("/feed"), policy_for(srv), headers={"If-None-Match": '"v1"'})
    assert result.status == 304
    assert result.content == b""
    assert result.headers["etag"] == '"v1"'
    assert srv.requests[0].headers["if-none-match"] == '"v1"'


def test_a_server_that_never_answers_times_out(srv: LoopbackServer) -> None:
    release = threading.Event()

    def stall(request: Request) -> Reply:
        release.wait(5)
        return html_reply()

    srv.routes.update({"/slow": stall})
    started = time.monotonic()
    try:
        err = fetch_error(srv.url("/slow"), policy_for(srv, read_timeout=0.2))
    finally:
        release.set()
    assert err.reason == "timeout"
    assert err.transient
    assert time.monotonic() - started < 2


def _huge_body(sent: list[int], done: threading.Event, total: int = 50 * 1024 * 1024) -> Iterator[bytes]:
    chunk = b"x" * 65536
    try:
        while sent[0] < total:
            sent[0] += len(chunk)
            yield chunk
    finally:
        done.set()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_50_mb_body_is_cut_off_early(srv: LoopbackServer, declared: bool) -> None:
    sent = [0]
    done = threading.Event()
    size = 50 * 1024 * 1024
    headers = {"Content-Type": "text/html", **({"Content-Length": str(size)} if declared else {})}
    srv.routes.update({"/big": lambda r: Reply(200, _huge_body(sent, done, size), headers)})
    err = fetch_error(srv.url("/big"), policy_for(srv, max_bytes=256 * 1024))
    assert err.reason == "too_large"
    assert not err.transient
    done.wait(5)  # the server gives up once we hang up
    assert sent[0] < size / 2, f"the server got to send {sent[0]} bytes"


def test_a_binary_body_is_fetched_then_refused_by_extraction(srv: LoopbackServer) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    srv.routes.update({"/logo.png": lambda r: Reply(200, png, {"Content-Type": "image/png"})})
    result = fetch(srv.url("/logo.png"), policy_for(srv))
    assert result.content == png
    with pytest.raises(ExtractError) as info:
        extract(result.content, result.url, result.content_type)
    assert info.value.reason == "binary"


def test_invalid_utf8_does_not_break_decoding(srv: LoopbackServer) -> None:
    body = b"<html><head><title>caf\xe9 \xff\xfe</title></head><body><p>" + b"Words and more words. " * 20 + \
        b"\xc3\x28 broken</p></body></html>"
    srv.routes.update({"/bad": lambda r: html_reply(body)})
    result = fetch(srv.url("/bad"), policy_for(srv))
    text = decode_html(result.content, result.content_type)
    assert "Words and more words." in text
    assert (extract(result.content, result.url, result.content_type).title or "").startswith("caf")


def test_a_gbk_page_from_the_corpus_decodes_right(srv: LoopbackServer, corpus_dir: Path) -> None:
    # The page's bytes are GBK but it (and here the server too) says UTF-8.
    page = (corpus_dir / "html" / "gbk-bytes_declared-utf8_alipay-blog.html").read_bytes()
    srv.routes.update({"/p": lambda r: html_reply(page, "text/html; charset=utf-8")})
    result = fetch(srv.url("/p"), policy_for(srv))
    assert result.content == page
    assert "阿里巴巴：制造孤独的CEO" in decode_html(result.content, result.content_type)
    assert extract(result.content, result.url, result.content_type).title == "阿里巴巴：制造孤独的CEO"


def test_a_gb2312_page_served_without_charset_decodes_right(srv: LoopbackServer, corpus_dir: Path) -> None:
    page = (corpus_dir / "html" / "gb2312_kuqin_sun-oracle_2009.html").read_bytes()
    srv.routes.update({"/p": lambda r: html_reply(page, "text/html")})
    result = fetch(srv.url("/p"), policy_for(srv))
    assert "与甲骨文交易前景堪忧" in decode_html(result.content, result.content_type)


def test_an_empty_page(srv: LoopbackServer) -> None:
    srv.routes.update({"/empty": lambda r: html_reply(b"")})
    result = fetch(srv.url("/empty"), policy_for(srv))
    assert (result.status, result.content) == (200, b"")
    with pytest.raises(ExtractError) as info:
        extract(result.content, result.url, result.content_type)
    assert info.value.reason == "empty"


# --- retries -------------------------------------------------------------------------------------


def test_429_with_retry_after_zero_then_200_succeeds_on_retry(srv: LoopbackServer) -> None:
    calls = []

    def limited(request: Request) -> Reply:
        calls.append(request)
        return Reply(429, b"slow down", {"Retry-After": "0"}) if len(calls) == 1 else html_reply()

    srv.routes.update({"/x": limited})
    started = time.monotonic()
    result = fetch(srv.url("/x"), policy_for(srv, retries=2, backoff_base=5.0))
    assert result.status == 200
    assert len(calls) == 2
    assert time.monotonic() - started < 2  # Retry-After: 0 beat the (long) backoff


def test_429_is_transient_when_retries_run_out(srv: LoopbackServer) -> None:
    srv.routes.update({"/x": lambda r: Reply(429, b"", {"Retry-After": "0"})})
    err = fetch_error(srv.url("/x"), policy_for(srv, retries=1))
    assert (err.reason, err.transient, len(srv.requests)) == ("http_429", True, 2)


def test_repeated_500_gives_a_transient_error_after_the_retries(srv: LoopbackServer) -> None:
    srv.routes.update({"/x": lambda r: Reply(500, b"oops")})
    err = fetch_error(srv.url("/x"), policy_for(srv, retries=2))
    assert err.reason == "http_500"
    assert err.transient
    assert len(srv.requests) == 3


def test_retry_after_values() -> None:
    assert http._retry_after("0") == 0
    assert http._retry_after("7") == 7
    assert http._retry_after("86400") == http.RETRY_AFTER_CAP
    assert http._retry_after("-5") == 0
    assert http._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert http._retry_after("Fri, 31 Dec 2100 23:59:59 GMT") == http.RETRY_AFTER_CAP
    assert http._retry_after("soon") is None


def test_connection_refused_is_a_transient_connect_error() -> None:
    with LoopbackServer() as srv:
        host_port = srv.host_port
    # The server is gone: nothing listens on that port any more.
    err = fetch_error(f"http://{host_port}/", FetchPolicy(allow_hosts=(host_port,), retries=0, connect_timeout=1))
    assert (err.reason, err.transient) == ("connect_error", True)


# --- redirects -----------------------------------------------------------------------------------


def test_redirects_are_followed_and_reported(srv: LoopbackServer) -> None:
    routes = {"/old": lambda r: Reply(301, b"", {"Location": "/mid"}),
              "/mid": lambda r: Reply(307, b"", {"Location": "/new"}),
              "/new": lambda r: html_reply()}
    srv.routes.update(routes)
    result = fetch(srv.url("/old"), policy_for(srv))
    assert (result.url, result.final_url, result.status) == (srv.url("/old"), srv.url("/new"), 200)


def test_too_many_redirects(srv: LoopbackServer) -> None:
    srv.routes.update({"/loop": lambda r: Reply(302, b"", {"Location": "/loop"})})
    err = fetch_error(srv.url("/loop"), policy_for(srv, max_redirects=3))
    assert err.reason == "too_many_redirects"
    assert len(srv.requests) == 4


@pytest.mark.parametrize(("target", "reason"), [
    ("http://10.0.0.1/admin", "private_host"),
    ("http://169.254.169.254/latest/meta-data/", "private_host"),
    ("http://192.168.1.1/", "private_host"),
    ("http://[::1]:{port}/", "private_host"),
    ("http://127.0.0.1:{other}/", "private_host"),  # loopback, but not the allowed port
    ("file:///etc/passwd", "bad_scheme"),  # even though local files are allowed
    ("ftp://127.0.0.1/x", "bad_scheme"),
])
def test_redirects_to_private_addresses_are_refused(srv: LoopbackServer, other: LoopbackServer, target: str,
                                                    reason: str) -> None:
    location = target.format(port=srv.host_port.rsplit(":", 1)[1], other=other.host_port.rsplit(":", 1)[1])
    srv.routes["/go"] = lambda r: Reply(302, b"", {"Location": location})
    err = fetch_error(srv.url("/go"), policy_for(srv, allow_files=True))
    assert err.reason == reason
    assert not err.transient
    assert err.url == srv.url("/go")
    assert location in str(err)
    assert other.requests == []


def test_credentials_are_not_forwarded_across_hosts(srv: LoopbackServer, other: LoopbackServer) -> None:
    other.routes["/new"] = lambda r: html_reply()
    srv.routes["/go"] = lambda r: Reply(302, b"", {"Location": other.url("/new")})
    policy = FetchPolicy(allow_hosts=(srv.host_port, other.host_port), retries=0)
    fetch(srv.url("/go"), policy, headers={"Authorization": "Bearer secret", "If-None-Match": "x"})
    assert srv.requests[0].headers["authorization"] == "Bearer secret"
    assert "authorization" not in other.requests[0].headers
    assert other.requests[0].headers["if-none-match"] == "x"


# --- local files ---------------------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.html"
    assert fetch_error(str(missing), FetchPolicy(allow_files=True)).reason == "file_not_found"
    assert fetch_error(missing.as_uri(), FetchPolicy(allow_files=True)).reason == "file_not_found"
    assert fetch_error(str(tmp_path), FetchPolicy(allow_files=True)).reason == "file_not_found"  # a directory
    assert fetch_error(str(missing), FetchPolicy()).reason == "bad_scheme"


def test_a_local_corpus_file_by_path_and_by_file_url(corpus_dir: Path) -> None:
    page = corpus_dir / "html" / "godev-blog_defer-panic-and-recover_from-gz.html"
    policy = FetchPolicy(allow_files=True)
    by_path = fetch(str(page), policy)
    by_url = fetch(page.as_uri(), policy)
    assert by_path.content == by_url.content == page.read_bytes()
    assert by_path.final_url == by_url.final_url == page.resolve().as_uri()
    assert by_path.content_type == "text/html"
    assert extract(by_path.content, by_path.url, by_path.content_type).title == "Defer, Panic, and Recover"


def test_local_files_are_refused_unless_allowed(corpus_dir: Path) -> None:
    page = corpus_dir / "html" / "godev-blog_defer-panic-and-recover_from-gz.html"
    for ref in (str(page), page.as_uri()):
        assert fetch_error(ref, FetchPolicy()).reason == "bad_scheme"
        with pytest.raises(FetchError):
            check_url(ref, FetchPolicy())
    assert fetch_error("file://otherhost/etc/passwd", FetchPolicy(allow_files=True)).reason == "bad_scheme"


def test_a_local_file_over_the_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.html"
    big.write_bytes(b"x" * 2048)
    assert fetch_error(str(big), FetchPolicy(allow_files=True, max_bytes=1024)).reason == "too_large"


# --- refusals ------------------------------------------------------------------------------------

REFUSED = [
    ("http://127.0.0.1:9/x", "private_host"),
    ("http://10.0.0.1/", "private_host"),
    ("http://169.254.169.254/latest/meta-data/", "private_host"),
    ("http://[::1]/", "private_host"),
    ("http://192.168.1.1/", "private_host"),
    ("http://172.16.0.1/", "private_host"),
    ("http://100.64.0.1/", "private_host"),  # carrier-grade NAT
    ("http://0.0.0.0/", "private_host"),
    ("http://224.0.0.1/", "private_host"),
    ("http://localhost/", "private_host"),
    ("http://2130706433/", "private_host"),  # 127.0.0.1 written as one number
    ("http://[::ffff:127.0.0.1]/", "private_host"),  # IPv4-mapped IPv6
    ("http://[::ffff:169.254.169.254]/", "private_host"),
    ("http://[fe80::1]/", "private_host"),
    ("http://[fd00::1]/", "private_host"),
    ("http://[2002:a00:1::]/", "private_host"),  # 6to4 wrapping 10.0.0.1
    ("ftp://example.org/a", "bad_scheme"),
    ("javascript:alert(1)", "bad_scheme"),
    ("data:text/html,<p>hi</p>", "bad_scheme"),
    ("gopher://127.0.0.1:70/", "bad_scheme"),
    ("http:///nohost", "bad_url"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused_urls(url: str, reason: str) -> None:
    policy = FetchPolicy(retries=3)
    with pytest.raises(FetchError) as info:
        check_url(url, policy)
    assert (info.value.reason, info.value.transient) == (reason, False)
    err = fetch_error(url, policy)
    assert (err.reason, err.transient, err.url) == (reason, False, url)


def test_the_default_policy_refuses_the_loopback_server_itself(srv: LoopbackServer) -> None:
    srv.routes.update({"*": lambda r: html_reply()})
    err = fetch_error(srv.url("/"), FetchPolicy())
    assert err.reason == "private_host"
    assert srv.requests == []


def test_allow_hosts_is_exact_host_and_port(srv: LoopbackServer) -> None:
    srv.routes.update({"*": lambda r: html_reply()})
    host, port = srv.host_port.rsplit(":", 1)
    assert fetch_error(srv.url("/"), FetchPolicy(allow_hosts=(f"{host}:{int(port) + 1}",))).reason == \
        "private_host"
    assert fetch_error(srv.url("/"), FetchPolicy(allow_hosts=(host,))).reason == "private_host"
    assert fetch(srv.url("/"), FetchPolicy(allow_private=True)).status == 200
    assert len(srv.requests) == 1


# --- DNS (answers faked; nothing is looked up for real) ------------------------------------------


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """Names -> a queue of answers; each lookup takes the next answer (the last one repeats)."""
    answers: dict[str, list[list[str]]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        queue = answers[name]
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        out = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port), 0, 0) if family == socket.AF_INET6 else (address, int(port))  # type: ignore[call-overload]
            out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_name_with_any_private_address_is_refused(fake_dns: dict[str, list[list[str]]]) -> None:
    fake_dns["mixed.test"] = [["93.184.216.34", "10.1.2.3"]]
    with pytest.raises(FetchError) as info:
        check_url("http://mixed.test/", FetchPolicy())
    assert info.value.reason == "private_host"
    assert "10.1.2.3" in str(info.value)


def test_dns_failure_is_a_transient_dns_error(fake_dns: dict[str, list[list[str]]]) -> None:
    fake_dns["nxdomain.test"] = []
    err = fetch_error("http://nxdomain.test/", FetchPolicy(retries=0))
    assert (err.reason, err.transient) == ("dns_error", True)
    # Allowed hosts are not checked early, but the transport's own lookup reports the same reason.
    err = fetch_error("http://nxdomain.test/", FetchPolicy(retries=0, allow_private=True))
    assert (err.reason, err.transient) == ("dns_error", True)


def test_dns_rebinding_is_caught_at_connect_time(srv: LoopbackServer, fake_dns: dict[str, list[list[str]]]) -> None:
    # First answer (the early check) is public, every later one (the connect) is the loopback server.
    # Were the guard only checking early, the request would reach the server.
    srv.routes.update({"*": lambda r: html_reply()})
    port = srv.host_port.rsplit(":", 1)[1]
    fake_dns["rebind.test"] = [["93.184.216.34"], ["127.0.0.1"]]
    err = fetch_error(f"http://rebind.test:{port}/", FetchPolicy(retries=0))
    assert err.reason == "private_host"
    assert "127.0.0.1" in str(err)
    assert srv.requests == []


def test_a_name_allowed_by_host_and_port_connects(srv: LoopbackServer, fake_dns: dict[str, list[list[str]]]) -> None:
    srv.routes.update({"*": lambda r: html_reply()})
    port = srv.host_port.rsplit(":", 1)[1]
    fake_dns["feeds.test"] = [["127.0.0.1"]]
    result = fetch(f"http://feeds.test:{port}/", FetchPolicy(retries=0, allow_hosts=(f"feeds.test:{port}",)))
    assert result.status == 200
    assert srv.requests[0].headers["host"] == f"feeds.test:{port}"


# --- many at once --------------------------------------------------------------------------------


def test_fetch_many_limits_per_host_and_never_raises(srv: LoopbackServer) -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(request: Request) -> Reply:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return html_reply()

    srv.routes.update({"/ok": slow, "/gone": lambda r: Reply(410, b"")})
    urls = [srv.url(f"/ok?{i}") for i in range(8)] + [srv.url("/gone"), "ftp://example.org/x",
                                                        "http://10.0.0.1/"]
    policy = policy_for(srv, concurrency=8, per_host_concurrency=2)
    results = dict(fetch_many(urls, policy))
    assert set(results) == set(urls)
    assert all(isinstance(results[u], FetchResult) for u in urls[:8])
    assert [results[u].reason for u in urls[8:]] == ["http_410", "bad_scheme", "private_host"]  # type: ignore[union-attr]
    assert state["peak"] == 2


def test_fetch_many_can_be_stopped_early(srv: LoopbackServer) -> None:
    srv.routes.update({"*": lambda r: html_reply()})
    results = fetch_many([srv.url(f"/{i}") for i in range(20)], policy_for(srv, concurrency=2))
    first = next(results)
    results.close()  # type: ignore[attr-defined]  # a generator; stopping it early must not hang
    assert isinstance(first[1], FetchResult)


def test_fetch_many_of_nothing() -> None:
    assert list(fetch_many([], FetchPolicy())) == []


# --- robots.txt ----------------------------------------------------------------------------------


def test_robots_txt_is_honoured(srv: LoopbackServer) -> None:
    robots = b"User-agent: *\nDisallow: /private\n\nUser-agent: tidings\nDisallow: /no-tidings\n"
    srv.routes.update({"/robots.txt": lambda r: Reply(200, robots, {"Content-Type": "text/plain"})})
    ours = policy_for(srv)  # the default user agent, "tidings/0.1 (...)": its own group applies
    assert robots_allowed(srv.url("/public/page"), ours)
    assert not robots_allowed(srv.url("/no-tidings"), ours)
    assert robots_allowed(srv.url("/private/page"), ours)
    other = policy_for(srv, user_agent="other/1.0")  # only the * group applies
    assert not robots_allowed(srv.url("/private/page"), other)
    assert robots_allowed(srv.url("/no-tidings"), other)
    assert len([r for r in srv.requests if r.path == "/robots.txt"]) == 2  # cached per agent


def test_missing_or_unreachable_robots_txt_allows() -> None:
    with LoopbackServer() as srv:  # every path is a 404
        assert robots_allowed(srv.url("/page"), policy_for(srv))
        host_port = srv.host_port
    assert robots_allowed(f"http://{host_port}/page", FetchPolicy(allow_hosts=(host_port,), retries=0))
    assert robots_allowed("/some/local/file.html", FetchPolicy(allow_files=True))


def test_robots_txt_is_fetched_behind_the_same_guard(srv: LoopbackServer) -> None:
    srv.routes.update({"/robots.txt": lambda r: Reply(200, b"User-agent: *\nDisallow: /\n")})
    # Not allowed to reach the host: robots.txt is not fetched (the page fetch will be refused anyway).
    assert robots_allowed(srv.url("/x"), FetchPolicy())
    assert srv.requests == []


# --- policy --------------------------------------------------------------------------------------


def test_policy_from_config() -> None:
    cfg = FetchConfig(read_timeout=3, retries=1, allow_hosts=["127.0.0.1:8080"], per_host_concurrency=4)
    policy = FetchPolicy.from_config(cfg, allow_files=True, backoff_base=0.1)
    assert (policy.read_timeout, policy.retries, policy.per_host_concurrency) == (3, 1, 4)
    assert policy.allow_hosts == ("127.0.0.1:8080",)
    assert policy.allow_files and not policy.allow_private
    assert policy.backoff_base == 0.1
    assert policy.user_agent == cfg.user_agent
    assert FetchPolicy.from_config(FetchConfig(), allow_hosts=["a:1"]).allow_hosts == ("a:1",)
