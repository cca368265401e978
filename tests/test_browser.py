"""Real-browser tests: headless Debian Chromium driven by Playwright, against ``tidings serve``
(uvicorn on a free loopback port) over a store holding the real week 2024-06-09, and the static
site from ``file://``.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Screenshots of the week
view, the digest page and the static site's index go to docs/screenshots/ when
``TIDINGS_SCREENSHOTS=1 python -m pytest tests/test_browser.py`` is run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply, free_port
from netguard import no_traffic_off_machine
from sqlalchemy import select
from weblib import WEEK, copy_db, corpus_db, week_db

from tidings import curate, pipeline
from tidings.config import Config, FetchConfig
from tidings.publish.site import build_site
from tidings.records import ItemRecord
from tidings.store import Digest, DigestEntryRow, Store, open_store

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
SHOOT = os.environ.get("TIDINGS_SCREENSHOTS") == "1"

playwright_sync = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
                allow_module_level=True)


def _article(title: str) -> Reply:
    paragraph = f"<p>{title}：这是一篇用于测试的文章正文，讲 Go 语言的并发模型、调度器与内存管理的实现细节。</p>"
    body = f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{paragraph * 8}</article></body></html>"
    return Reply(200, body.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


@pytest.fixture(scope="module")
def pages() -> Iterator[LoopbackServer]:
    """Pages for the add-links box, served on loopback."""
    routes = {"/go-scheduler": lambda r: _article("深入理解 Go 调度器"),
              "/rust-async": lambda r: _article("Rust 异步运行时对比")}
    with LoopbackServer(routes) as srv:
        yield srv


@pytest.fixture(scope="module")
def served(corpus_dir: Path, pages: LoopbackServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Path, Store]]:
    """(base URL, store path, store) of a running server."""
    import uvicorn

    from tidings.web import create_app

    work = tmp_path_factory.mktemp("browser")
    db = copy_db(week_db(corpus_dir), work / "t.db")
    store = open_store(db)
    config = Config(fetch=FetchConfig(allow_hosts=[pages.host_port], retries=0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, config), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", db, store
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="tidings-chromium-") as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def wait_until(page: object, expression: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript expression from here: the UI's CSP forbids the eval wait_for_function uses."""
    deadline = time.time() + timeout
    while not page.evaluate(expression):  # type: ignore[attr-defined]
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def saved(page: object, action: object) -> None:
    """Run an action that posts a form through app.js and wait until the server's page is in."""
    page.evaluate("document.getElementById('status').textContent = ''")  # type: ignore[attr-defined]
    action()  # type: ignore[operator]
    wait_until(page, "['Saved', 'Not saved: see the message on the page']"
                     ".includes(document.getElementById('status').textContent)")
    assert page.text_content("#status") == "Saved"  # type: ignore[attr-defined]


def entry_ids(store: Store, week: str) -> dict[str, int]:
    with store.session() as session:
        digest = session.scalar(select(Digest).where(Digest.week == date.fromisoformat(week)))
        assert digest is not None
        return {e.title_raw or "": e.id for e in digest.entries}


def entry_of(store: Store, week: str, part: str) -> int:
    return next(i for title, i in entry_ids(store, week).items() if part in title)


def section_titles(page: object, section: str) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        f'ol.entries[data-section="{section}"] > li.entry .title', "els => els.map(e => e.textContent.trim())"
    )


def cli_digest(db: Path, week: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "--db", str(db), "digest", "--week", week],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TIDINGS_DB": str(db)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_curate_a_real_week_and_the_digest_shows_exactly_that(served: tuple[str, Path, Store], page: object) -> None:
    base, db, store = served
    qwen = entry_of(store, WEEK, "Qwen2")
    awq = entry_of(store, WEEK, "AWQ")
    rlhf = entry_of(store, WEEK, "RLHF替代方案")
    pissa = entry_of(store, WEEK, "PiSSA")
    mobile = entry_of(store, WEEK, "Mobile-Agent-v2")
    page.goto(f"{base}/week?week={WEEK}")  # type: ignore[attr-defined]
    if SHOOT:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "week-view.png"))  # type: ignore[attr-defined]

    # 1. Edit a summary in place: click it, type, Ctrl+Enter.
    new_summary = "通义千问发布 Qwen2：五个尺寸，27 种新语言，最长 128K 上下文。"

    def edit_summary() -> None:
        page.click(f"#entry-{qwen} .summary")  # type: ignore[attr-defined]
        page.keyboard.press("Control+A")  # type: ignore[attr-defined]
        page.keyboard.type(new_summary)  # type: ignore[attr-defined]
        page.keyboard.press("Control+Enter")  # type: ignore[attr-defined]

    saved(page, edit_summary)
    assert page.text_content(f"#entry-{qwen} .summary") == new_summary  # type: ignore[attr-defined]

    # 2. Move an item to another section with its section menu (which submits on change).
    saved(page, lambda: page.select_option(f"#entry-{awq} select[name=section]", "📒 后端相关"))  # type: ignore[attr-defined]
    assert any("AWQ" in t for t in section_titles(page, "📒 后端相关"))
    assert not any("AWQ" in t for t in section_titles(page, "🌟 AI 相关"))

    # 3. Reorder two items by drag and drop: PiSSA goes above the RLHF item.
    titles = section_titles(page, "🌟 AI 相关")
    assert titles.index(next(t for t in titles if "RLHF" in t)) < titles.index(next(t for t in titles if "PiSSA" in t))
    # A tall window keeps both cards on screen: a scroll mid-drag would pick up another card.
    page.set_viewport_size({"width": 1280, "height": 4000})  # type: ignore[attr-defined]
    page.locator(f"#entry-{rlhf}").scroll_into_view_if_needed()  # type: ignore[attr-defined]
    saved(page, lambda: page.drag_and_drop(f"#entry-{pissa} .entry-head", f"#entry-{rlhf}",  # type: ignore[attr-defined]
                                           target_position={"x": 40, "y": 4}))
    page.set_viewport_size({"width": 1280, "height": 900})  # type: ignore[attr-defined]
    titles = section_titles(page, "🌟 AI 相关")
    pissa_at = titles.index(next(t for t in titles if "PiSSA" in t))
    assert "RLHF" in titles[pissa_at + 1]

    # 4. Drop one item.
    saved(page, lambda: page.click(f"#entry-{mobile} button.drop"))  # type: ignore[attr-defined]
    assert "dropped" in (page.get_attribute(f"#entry-{mobile}", "class") or "")  # type: ignore[attr-defined]

    # A reload shows exactly what was saved.
    page.reload()  # type: ignore[attr-defined]
    assert page.text_content(f"#entry-{qwen} .summary") == new_summary  # type: ignore[attr-defined]
    assert any("AWQ" in t for t in section_titles(page, "📒 后端相关"))

    # The digest preview, then the real CLI, show exactly those changes.
    page.goto(f"{base}/digest/{WEEK}")  # type: ignore[attr-defined]
    preview = page.text_content("#preview") or ""  # type: ignore[attr-defined]
    if SHOOT:
        page.screenshot(path=str(SCREENSHOTS / "digest-page.png"))  # type: ignore[attr-defined]
    assert f"[《你好，Qwen2!》](https://mp.weixin.qq.com/s/s5vChAY6B2s_ZVK-ALYP2w)。{new_summary}" in preview
    ai = preview.split("## 🌟 AI 相关", 1)[1].split("## ⭐️", 1)[0]
    backend = preview.split("## 📒 后端相关", 1)[1].split("## 📒 前端相关", 1)[0]
    assert "AWQ" not in ai and "深入理解AWQ量化技术" in backend
    assert ai.index("PiSSA") < ai.index("RLHF替代方案")
    assert "Mobile-Agent-v2" not in preview
    assert cli_digest(db, WEEK) == preview

    # The copy button copies exactly the preview.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)  # type: ignore[attr-defined]
    page.click("button.copy")  # type: ignore[attr-defined]
    wait_until(page, "document.getElementById('status').textContent.startsWith('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == preview  # type: ignore[attr-defined]
    assert not page.errors and not page.dialogs  # type: ignore[attr-defined]


def test_add_links_from_the_box_and_watch_them_arrive(served: tuple[str, Path, Store], pages: LoopbackServer,
                                                      page: object) -> None:
    base, _db, _store = served
    week = "2024-06-16"
    page.goto(f"{base}/week?week={week}")  # type: ignore[attr-defined]
    links = "\n".join([pages.url("/go-scheduler"), pages.url("/rust-async"), "http://10.1.2.3/secret",
                       "http://[::1]:22/", "file:///etc/passwd"])
    with no_traffic_off_machine():
        page.fill("#links-box", links)  # type: ignore[attr-defined]
        page.click("#add-links button[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_selector(".job")  # type: ignore[attr-defined]
        # Progress shows per item while the job runs, then the entries arrive in the week.
        page.wait_for_selector("li.entry .title:text('深入理解 Go 调度器')", timeout=30_000)  # type: ignore[attr-defined]
        page.wait_for_selector("li.entry .title:text('Rust 异步运行时对比')", timeout=30_000)  # type: ignore[attr-defined]
    states = page.eval_on_selector_all(".job-item", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert sum("done" in s for s in states) == 2
    refused = [s for s in states if "refused" in s]
    assert any("10.1.2.3" in s and "private_host" in s for s in refused)
    assert any("[::1]:22" in s and "private_host" in s for s in refused)
    assert any("file:///etc/passwd" in s and "only http and https" in s for s in refused)
    assert {r.path for r in pages.requests} >= {"/go-scheduler", "/rust-async"}
    assert not page.errors  # type: ignore[attr-defined]


def test_a_private_address_alone_is_refused_in_the_box(served: tuple[str, Path, Store], page: object) -> None:
    base, _db, _store = served
    page.goto(f"{base}/week?week=2024-06-30")  # type: ignore[attr-defined]
    with no_traffic_off_machine():
        page.fill("#links-box", "http://192.168.0.1/admin")  # type: ignore[attr-defined]
        page.click("#add-links button[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_selector('.field-error[data-field="links"]')  # type: ignore[attr-defined]
    assert "no link was accepted" in (page.text_content('.field-error[data-field="links"]') or "")  # type: ignore[attr-defined]
    assert "private_host" in (page.text_content(".refused") or "")  # type: ignore[attr-defined]
    assert page.input_value("#links-box") == "http://192.168.0.1/admin"  # type: ignore[attr-defined]


def test_stored_xss_runs_no_script_and_renders_no_javascript_link(served: tuple[str, Path, Store],
                                                                   page: object) -> None:
    base, _db, store = served
    week = "2024-06-23"
    report = pipeline.ingest(store, [
        ItemRecord(url="javascript:alert(1)", title="<img src=x onerror=alert(1)>", summary="<script>alert(2)</script>"),
        ItemRecord(url="https://example.org/ok", title="<svg onload=alert(3)>", summary="javascript:alert(4)"),
    ], source_kind="test", locator="xss")
    curate.assign_to_week(store, report.item_ids, date.fromisoformat(week), Config())
    for url in (f"/week?week={week}", f"/digest/{week}", f"/item/{report.item_ids[0]}", f"/item/{report.item_ids[1]}"):
        page.goto(base + url)  # type: ignore[attr-defined]
        page.wait_for_timeout(200)  # type: ignore[attr-defined]
        assert page.evaluate("document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0  # type: ignore[attr-defined]
        assert page.evaluate("document.querySelectorAll('img[src=x], svg').length") == 0  # type: ignore[attr-defined]
    page.goto(f"{base}/week?week={week}")  # type: ignore[attr-defined]
    assert "<img src=x onerror=alert(1)>" in (page.text_content("body") or "")  # type: ignore[attr-defined]
    # Typing the attack into the in-place editor stores it as text, and it still does not run.
    with store.session() as session:
        row = session.scalars(select(DigestEntryRow).where(DigestEntryRow.item_id == report.item_ids[1])).one()
        entry = row.id

    def type_title() -> None:
        page.click(f"#entry-{entry} .title")  # type: ignore[attr-defined]
        page.keyboard.press("Control+A")  # type: ignore[attr-defined]
        page.keyboard.type("<img src=x onerror=alert(5)>")  # type: ignore[attr-defined]
        page.keyboard.press("Enter")  # type: ignore[attr-defined]

    saved(page, type_title)
    page.reload()  # type: ignore[attr-defined]
    page.wait_for_timeout(200)  # type: ignore[attr-defined]
    assert page.text_content(f"#entry-{entry} .title") == "<img src=x onerror=alert(5)>"  # type: ignore[attr-defined]
    assert page.dialogs == [] and page.errors == []  # type: ignore[attr-defined]


def test_static_site_search_works_from_file_urls(corpus_dir: Path, tmp_path: Path, page: object) -> None:
    store = open_store(copy_db(corpus_db(corpus_dir), tmp_path / "t.db"))
    site = tmp_path / "site"
    build_site(store, Config(), site)
    store.close()
    page.goto((site / "index.html").as_uri())  # type: ignore[attr-defined]
    if SHOOT:
        page.screenshot(path=str(SCREENSHOTS / "site-index.png"))  # type: ignore[attr-defined]
    # The header's search box submits to search.html?q=…, which runs over the prebuilt index.
    page.fill("input[name=q]", "Qwen2")  # type: ignore[attr-defined]
    page.press("input[name=q]", "Enter")  # type: ignore[attr-defined]
    page.wait_for_selector("#search-results li")  # type: ignore[attr-defined]
    hits = page.eval_on_selector_all("#search-results .item-title", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert "你好，Qwen2!" in hits
    # A Chinese query finds Chinese titles: bigrams on both sides.
    page.fill("#search-input", "大语言模型")  # type: ignore[attr-defined]
    wait_until(page, "document.getElementById('search-status').textContent.includes('大语言模型')")
    hits = page.eval_on_selector_all("#search-results .item-title", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert "开源百B大语言模型哪家强?" in hits
    page.fill("#search-input", "调度")  # type: ignore[attr-defined]
    wait_until(page, "document.getElementById('search-status').textContent.includes('调度')")
    hits = page.eval_on_selector_all("#search-results .item-title", "els => els.map(e => e.textContent)")  # type: ignore[attr-defined]
    assert hits and all("调度" in h or h for h in hits)
    # A hit opens its digest's page, from disk.
    page.fill("#search-input", "你好 Qwen2")  # type: ignore[attr-defined]
    wait_until(page, "document.getElementById('search-status').textContent.includes('你好 Qwen2')")
    page.click("#search-results .item-title:text('你好，Qwen2!')")  # type: ignore[attr-defined]
    page.wait_for_load_state()  # type: ignore[attr-defined]
    assert page.url.endswith("/digests/2024-06-09/index.html")  # type: ignore[attr-defined]
    assert "你好，Qwen2!" in (page.text_content("article") or "")  # type: ignore[attr-defined]
    assert not page.errors  # type: ignore[attr-defined]
