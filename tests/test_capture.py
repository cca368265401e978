"""Capture from the browser (issue 18, part 1): the bookmarklet of ``tidings serve`` posts the page
the reader has open, and the item is extracted as a fetched page is.

The browser test runs Debian's Chromium on a real WeChat page from ``../shared/corpus/html/``,
served on loopback under a CSP that forbids every request of its own (``connect-src 'none'``, no
scripts, no images): the bookmarklet's form still reaches the server. The route tests post with
the real app and store; the fetch tests use a real loopback server."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from loopback import LoopbackServer, Reply, free_port
from netguard import no_traffic_off_machine
from sqlalchemy import func, select

from tidings import collect, pipeline
from tidings.config import Config, FetchConfig
from tidings.records import ItemRecord
from tidings.sources.urlcheck import FetchPolicy
from tidings.store import Item, ItemStatus, Store, open_store
from tidings.web import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTICLE = "wechat_rendered-dom_python-defer_2020.html"  # 一日一技：在 Python 中实现延迟调用
EXPIRED = "wechat_error-page_link-expired_no-body.html"  # the "link expired" wall, as WeChat serves it
# The page may not run scripts, load anything or connect anywhere; forms are not limited (no form-action).
STRICT_CSP = "default-src 'none'; style-src 'unsafe-inline'; connect-src 'none'"
NO_FORMS_CSP = STRICT_CSP + "; form-action 'none'"  # and no form may be posted anywhere either
BASE = "http://127.0.0.1:8000"


def html_reply(body: bytes, csp: str = STRICT_CSP) -> Reply:
    return Reply(200, body, {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": csp})


def item_count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count(Item.id))) or 0)


def only_item(store: Store) -> Item:
    with store.session() as session:
        items = list(session.scalars(select(Item)))
        assert len(items) == 1, [i.url for i in items]
        return items[0]


def item_at(store: Store, url: str) -> Item:
    with store.session() as session:
        item = session.scalar(select(Item).where(Item.url == url))
        assert item is not None, url
        return item


def added_from_file(path: Path) -> Item:
    """What ``tidings add FILE`` then ``tidings fetch`` make of the same page, in a store of its own."""
    with tempfile.TemporaryDirectory(prefix="tidings-add-") as folder:
        store = open_store(Path(folder) / "add.db")
        try:
            collect.add_urls(store, [str(path)])
            pipeline.run(store, Config(), stages=["fetch"], policy=FetchPolicy(allow_files=True))
            return only_item(store)
        finally:
            store.close()


def key_of(client: TestClient) -> str:
    """The capture key, as the bookmarklet on /capture carries it."""
    page = client.get("/capture")
    assert page.status_code == 200
    code = unquote(re.search(r'href="javascript:([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    return re.search(r'key:"([0-9a-f]{64})"', code).group(1)  # type: ignore[union-attr]


def post(client: TestClient, *, url: str, html: bytes, key: str, selection: str = "") -> object:
    fields = {"url": (None, url), "html": (None, html), "selection": (None, selection), "key": (None, key)}
    return client.post("/capture", files=fields)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "capture.db")
    yield opened
    opened.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store, Config()), base_url=BASE) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def article(corpus_dir: Path) -> bytes:
    return (corpus_dir / "html" / ARTICLE).read_bytes()


# --- the route ---------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_refused_and_stores_nothing(client: TestClient, store: Store, article: bytes) -> None:
    for key in ("", "0" * 64, key_of(client)[:-1] + "x"):
        answer = post(client, url="https://mp.weixin.qq.com/s/defer", html=article, key=key)
        assert answer.status_code == 403  # type: ignore[attr-defined]
        assert "Nothing was saved" in answer.text  # type: ignore[attr-defined]
    assert item_count(store) == 0


def test_capture_key_depends_on_the_token(store: Store, article: bytes) -> None:
    """With a web token the bookmarklet's post passes the guard without the token cookie (a page of
    another site cannot send it) and is checked by its key; the key changes with the token."""
    with TestClient(create_app(store, Config()), base_url=BASE) as plain:
        plain_key = key_of(plain)
    token = "a-long-secret-token"
    with TestClient(create_app(store, Config(), token=token), base_url=BASE) as guarded:
        assert guarded.get("/capture").status_code == 401  # the key is shown only behind the token
        assert guarded.get(f"/capture?token={token}").status_code == 200
        key = key_of(guarded)
        assert key != plain_key
        guarded.cookies.clear()
        assert post(guarded, url="https://mp.weixin.qq.com/s/defer", html=article, key=plain_key
                    ).status_code == 403  # type: ignore[attr-defined]
        assert item_count(store) == 0
        saved = post(guarded, url="https://mp.weixin.qq.com/s/defer", html=article, key=key)
        assert saved.status_code == 201, saved.text  # type: ignore[attr-defined]
        assert guarded.get("/week").status_code == 401  # the exemption is for the capture doors only
        assert guarded.get("/capture/receive").status_code == 200  # the fallback window: holds nothing
    assert item_count(store) == 1
    with TestClient(create_app(store, Config()), base_url="http://tidings.example.org") as foreign:
        # Without a token only loopback Host names are served, the capture doors included.
        assert post(foreign, url="https://example.org/other", html=article, key=plain_key
                    ).status_code == 421  # type: ignore[attr-defined]
    assert item_count(store) == 1


def test_oversized_page_is_a_clear_413_and_stores_nothing(store: Store, corpus_dir: Path) -> None:
    cap = 64 * 1024
    config = Config(fetch=FetchConfig(max_bytes=cap))
    with TestClient(create_app(store, config), base_url=BASE) as small:
        key = key_of(small)
        # Just over the cap (read up to the cap, then refused) and far over it (refused by its length).
        for size in (cap + 1, cap * 20):
            answer = post(small, url="https://example.org/big", html=b"<p>" + b"x" * size + b"</p>", key=key)
            assert answer.status_code == 413  # type: ignore[attr-defined]
            assert f"larger than the {cap} bytes allowed" in answer.text  # type: ignore[attr-defined]
        assert item_count(store) == 0
        page = (corpus_dir / "html" / "wechat_static-2018_news-brief.html").read_bytes()  # 162 KB: over
        assert post(small, url="https://mp.weixin.qq.com/s/news", html=page, key=key
                    ).status_code == 413  # type: ignore[attr-defined]
    assert item_count(store) == 0


@pytest.mark.parametrize("url", ["", "file:///etc/passwd", "javascript:alert(1)", "https://", "http://exa mple.org/",
                                 "http://example.org:99999/", "mp.weixin.qq.com/s/abc"])
def test_a_page_url_must_be_http_with_a_host(client: TestClient, store: Store, article: bytes, url: str) -> None:
    answer = post(client, url=url, html=article, key=key_of(client))
    assert answer.status_code == 400, answer.text  # type: ignore[attr-defined]
    assert "Not captured" in answer.text  # type: ignore[attr-defined]
    assert item_count(store) == 0


def test_selection_becomes_the_note_and_a_second_capture_is_the_same_item(
        client: TestClient, store: Store, article: bytes) -> None:
    key = key_of(client)
    url = "https://mp.weixin.qq.com/s?__biz=MzI2MzEwNTY3OQ==&mid=2648977811&idx=1&sn=defer"
    first = post(client, url=url, html=article, key=key, selection="  Python 没有 defer 关键字\n")
    assert first.status_code == 201, first.text  # type: ignore[attr-defined]
    assert "Saved: 一日一技：在 Python 中实现延迟调用" in first.text  # type: ignore[attr-defined]
    item = only_item(store)
    assert item.note == "Python 没有 defer 关键字"
    # Again, with WeChat's volatile parameters and another selection: the same item, both quotes kept.
    again = post(client, url=url + "&chksm=abc&scene=21#wechat_redirect", html=article, key=key, selection="装饰器")
    assert again.status_code == 200  # type: ignore[attr-defined]
    assert "Already known" in again.text  # type: ignore[attr-defined]
    assert only_item(store).note == "Python 没有 defer 关键字\n\n装饰器"
    post(client, url=url, html=article, key=key, selection="装饰器")  # a quote already there is not repeated
    assert only_item(store).note == "Python 没有 defer 关键字\n\n装饰器"


def test_captured_text_is_shown_escaped(client: TestClient, store: Store) -> None:
    """A page's title is untrusted: the answer page escapes it (Jinja2 autoescape)."""
    body = ("<html><head><title>&lt;script&gt;alert(1)&lt;/script&gt; 并发模型</title></head><body><article>"
            + "<p>这是一篇用于测试的文章正文，讲 Go 语言的并发模型、调度器与内存管理的实现细节。</p>" * 8
            + "</article></body></html>").encode()
    answer = post(client, url="https://example.org/xss", html=body, key=key_of(client))
    assert answer.status_code == 201, answer.text  # type: ignore[attr-defined]
    assert "<script>alert(1)" not in answer.text  # type: ignore[attr-defined]
    assert "&lt;script&gt;alert(1)" in answer.text  # type: ignore[attr-defined]


# --- a capture and the fetcher ------------------------------------------------------------------


def test_a_capture_replaces_a_failed_fetch_and_no_later_fetch_overwrites_it(
        client: TestClient, store: Store, article: bytes, corpus_dir: Path) -> None:
    expired = (corpus_dir / "html" / EXPIRED).read_bytes()
    with LoopbackServer({"/s/defer": lambda r: html_reply(expired)}) as site, no_traffic_off_machine():
        url = site.url("/s/defer")
        policy = FetchPolicy(allow_hosts=(site.host_port,), retries=0)
        pipeline.ingest(store, [ItemRecord(url=url)], source_kind="cli", locator="tidings add")
        pipeline.run(store, Config(), stages=["fetch"], policy=policy)
        failed = only_item(store)
        assert failed.status in (ItemStatus.REJECTED, ItemStatus.ERROR), failed.status

        answer = post(client, url=url, html=article, key=key_of(client))
        assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
        captured = only_item(store)
        assert captured.status == ItemStatus.EXTRACTED and captured.error_reason is None
        assert captured.title == "一日一技：在 Python 中实现延迟调用"  # the wall's title is gone
        assert captured.raw == article

        # The wall again, through every way a URL comes back: a forced re-fetch, a feed entry, an add.
        pipeline.run(store, Config(), stages=["fetch"], policy=policy, force=True)
        pipeline.ingest(store, [ItemRecord(url=url, title="feed title")], source_kind="feed", locator="feed.xml")
        collect.add_urls(store, [url])
        pipeline.run(store, Config(), stages=["fetch"], policy=policy, force=True)
    after = only_item(store)
    assert (after.id, after.status, after.title, after.text, after.raw) == (
        captured.id, ItemStatus.EXTRACTED, captured.title, captured.text, article)
    fetches = [r for r in site.requests if r.path == "/s/defer"]
    assert len(fetches) == 1  # only the first fetch, before the capture


def test_a_capture_without_article_keeps_the_text_saved_before(client: TestClient, store: Store, article: bytes,
                                                                 corpus_dir: Path) -> None:
    key = key_of(client)
    url = "https://mp.weixin.qq.com/s/keep"
    assert post(client, url=url, html=article, key=key).status_code == 201  # type: ignore[attr-defined]
    before = only_item(store)
    wall = post(client, url=url, html=(corpus_dir / "html" / EXPIRED).read_bytes(), key=key)
    assert wall.status_code == 200  # type: ignore[attr-defined]
    assert "the text saved earlier was kept" in wall.text  # type: ignore[attr-defined]
    after = only_item(store)
    assert (after.status, after.text, after.title, after.raw) == (before.status, before.text, before.title, article)


# --- the bookmarklet in Chromium ----------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    """(base URL, store) of ``tidings serve`` on a free loopback port, over an empty store."""
    import uvicorn

    store = open_store(tmp_path_factory.mktemp("capture-browser") / "t.db")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, Config()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", store
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    with playwright_sync.sync_playwright() as p, tempfile.TemporaryDirectory(prefix="tidings-chromium-") as profile:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS)
        # Nothing leaves the machine: a request to any other host is aborted by the browser.
        context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
        yield context
        context.close()


def run_bookmarklet(browser: object, page: object, code: str) -> object:
    """Run the bookmarklet on ``page`` and return the window it opens, loaded."""
    with browser.expect_page(timeout=30_000) as opened:  # type: ignore[attr-defined]
        page.evaluate(code)  # type: ignore[attr-defined]
    window = opened.value
    window.wait_for_load_state("load", timeout=60_000)
    return window


def bookmarklet_code(browser: object, base: str) -> str:
    """The code of the bookmarklet link on /capture, as the browser runs it when it is clicked."""
    help_page = browser.new_page()  # type: ignore[attr-defined]
    help_page.goto(f"{base}/capture")
    href = help_page.get_attribute("#bookmarklet", "href")
    help_page.close()
    assert href is not None and href.startswith("javascript:")
    return unquote(href.removeprefix("javascript:"))


@contextmanager
def requests_to(browser: object, base: str) -> Iterator[list[tuple[str, str]]]:
    """(method, path) of every request the browser sends to tidings meanwhile."""
    sent: list[tuple[str, str]] = []

    def note(request: object) -> None:
        if request.url.startswith(base):  # type: ignore[attr-defined]
            sent.append((request.method, request.url.removeprefix(base)))  # type: ignore[attr-defined]

    browser.on("request", note)  # type: ignore[attr-defined]
    try:
        yield sent
    finally:
        browser.remove_listener("request", note)  # type: ignore[attr-defined]


def wait_for_title(window: object, start: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not window.title().startswith(start):  # type: ignore[attr-defined]
        assert time.time() < deadline, window.content()[:2000]  # type: ignore[attr-defined]
        time.sleep(0.1)


def test_the_bookmarklet_captures_a_wechat_page_under_a_strict_csp(
        served: tuple[str, Store], browser: object, article: bytes, corpus_dir: Path) -> None:
    base, store = served
    before = item_count(store)
    with LoopbackServer({"/s/defer": lambda r: html_reply(article)}) as site:
        code = bookmarklet_code(browser, base)
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(site.url("/s/defer"))
        # The page's CSP is in force: a request of its own to tidings is blocked.
        assert page.evaluate(f"fetch({base!r} + '/capture').then(() => 'sent', () => 'blocked')") == "blocked"
        page.evaluate("""() => { const range = document.createRange();
            range.selectNodeContents(document.querySelector('#activity-name'));
            window.getSelection().removeAllRanges(); window.getSelection().addRange(range); }""")
        with requests_to(browser, base) as sent:
            window = run_bookmarklet(browser, page, code)
        assert window.title().startswith("Saved: 一日一技：在 Python 中实现延迟调用"), window.content()[:2000]
        # The page's own form, straight into the new window.
        assert [r for r in sent if r[1].startswith("/capture")] == [("POST", "/capture")]
        window.close()

        assert item_count(store) == before + 1
        item = item_at(store, site.url("/s/defer"))
        added = added_from_file(corpus_dir / "html" / ARTICLE)
        assert item.status == ItemStatus.EXTRACTED
        assert item.title == added.title == "一日一技：在 Python 中实现延迟调用"
        assert item.text == added.text  # the full text, as `tidings add` of the file gives it
        # Whole: from the article's first sentence to its last (read off the page by hand).
        assert (item.text or "").startswith("熟悉 Golang 的同学都知道，Golang 里面有一个关键词叫做defer")
        assert (item.text or "").endswith("确保始终增加一条日期数据。")
        assert item.note == "一日一技：在 Python 中实现延迟调用"  # the selection

        # Capture again: still one item.
        window = run_bookmarklet(browser, page, code)
        assert "Already known" in (window.text_content("main") or "")
        window.close()
        page.close()
    assert item_count(store) == before + 1


def test_a_page_that_may_not_post_forms_goes_by_a_window_of_ours(
        served: tuple[str, Store], browser: object, corpus_dir: Path) -> None:
    """Under ``form-action 'none'`` the form is blocked: the page goes by postMessage to
    /capture/receive, which posts it from our origin."""
    base, store = served
    news = (corpus_dir / "html" / "wechat_static-2018_news-brief.html").read_bytes()
    with LoopbackServer({"/s/news": lambda r: html_reply(news, NO_FORMS_CSP)}) as site:
        code = bookmarklet_code(browser, base)
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(site.url("/s/news"))
        with requests_to(browser, base) as sent:
            window = run_bookmarklet(browser, page, code)
            wait_for_title(window, "Saved: ")
        window.close()  # type: ignore[attr-defined]
        page.close()
    # The form was blocked (the page never posted); our window was opened and posted it.
    assert [r for r in sent if r[1].startswith("/capture")] == [("GET", "/capture/receive"), ("POST", "/capture")]
    added = added_from_file(corpus_dir / "html" / "wechat_static-2018_news-brief.html")
    item = item_at(store, site.url("/s/news"))
    assert (item.status, item.title, item.text) == (ItemStatus.EXTRACTED, added.title, added.text)
    assert added.title == "4月6日周五【新闻速览一分钟】"


def test_a_captured_wall_is_set_aside_with_its_reason(client: TestClient, store: Store, corpus_dir: Path) -> None:
    answer = post(client, url="https://mp.weixin.qq.com/s/expired", html=(corpus_dir / "html" / EXPIRED).read_bytes(),
                  key=key_of(client))
    assert answer.status_code == 201  # type: ignore[attr-defined]
    assert "no article found" in answer.text  # type: ignore[attr-defined]
    item = only_item(store)
    assert item.status == ItemStatus.REJECTED and item.error_reason and not item.text


def test_a_capture_of_unknown_length_is_refused(client: TestClient, store: Store) -> None:
    """A body without Content-Length (chunked) could be of any size: refused before it is read."""
    answer = client.post("/capture", content=iter([b"--x\r\n", b"--x--\r\n"]),
                         headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert answer.status_code == 411
    assert item_count(store) == 0
