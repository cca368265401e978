"""Triage by keyboard in Debian's Chromium: the week view's list mode over the shared corpus (two
real digests as the curator's history, the 22 real feeds as this week's candidates), 60 candidates
triaged with keys only, then a reload shows every line as it was left.

``TIDINGS_SCREENSHOTS=1`` also saves the list mode to docs/screenshots/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from loopback import free_port
from netguard import no_traffic_off_machine
from sqlalchemy import func, select
from test_browser import SCREENSHOTS, SHOOT, browser, wait_until  # noqa: F401 (a fixture)
from test_browser import page as page  # noqa: F401,F811 (the page fixture, used by name)
from weblib import copy_db, week_db

from tidings import collect, curate
from tidings.config import Config
from tidings.stages.stories import assign_stories
from tidings.store import CuratorAction, DigestEntryRow, Store, open_store


@pytest.fixture(scope="module")
def served(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store, date]]:
    """(base URL, store, this week) of a running server whose week holds the corpus feeds' items."""
    import uvicorn

    from tidings.web import create_app

    work = tmp_path_factory.mktemp("triage-browser")
    store = open_store(copy_db(week_db(corpus_dir), work / "t.db"))
    config = Config()
    report, _ = collect.import_paths(store, [str(corpus_dir / "feeds")], "feed", config)
    assert report.done > 400
    assign_stories(store)  # the stories stage, as `tidings run` does
    week = curate.latest_week_end(curate.today(config) + timedelta(days=6), config.week_ends_on)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", store, week
    server.should_exit = True
    thread.join(10)
    store.close()


def lines(page: object) -> list[dict[str, str]]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        "#triage-list li.row",
        "els => els.map(e => ({id: e.dataset.entryId, kept: e.dataset.kept, section: e.dataset.section,"
        " cursor: e.classList.contains('cursor') ? '1' : '0', selected: e.classList.contains('selected') ? '1' : '0'}))",
    )


def test_triage_60_candidates_with_keys_only_and_a_reload_shows_them_as_left(
    served: tuple[str, Store, date], page: object
) -> None:
    base, store, week = served
    url = f"{base}/week?week={week.isoformat()}&view=list"
    with no_traffic_off_machine():
        page.goto(url)  # type: ignore[attr-defined]
        before = lines(page)
        assert len(before) > 400 and before[0]["cursor"] == "1"
        sections = page.eval_on_selector_all(  # type: ignore[attr-defined]
            "#section-names option", "els => els.map(e => e.value)")
        expected: dict[str, tuple[str, str]] = {}
        keyboard = page.keyboard  # type: ignore[attr-defined]
        for n, line in enumerate(before[:57]):
            if n % 3 == 0:
                keyboard.press("x")
                expected[line["id"]] = ("0", line["section"])
            elif n % 3 == 1:
                keyboard.press("Space")
                expected[line["id"]] = ("1", line["section"])
            else:
                number = 1 + n % 4
                keyboard.press(str(number))
                expected[line["id"]] = (line["kept"], sections[number - 1])
            keyboard.press("j")
        # The last three at once: shift extends the selection, x drops all of it.
        keyboard.press("Shift+J")
        keyboard.press("Shift+J")
        assert [li["id"] for li in lines(page) if li["selected"] == "1"] == [b["id"] for b in before[57:60]]
        keyboard.press("x")
        for line in before[57:60]:
            expected[line["id"]] = ("0", line["section"])
        wait_until(page, "document.body.dataset.pending === '0'")
        assert page.text_content("#status") == "Saved"  # type: ignore[attr-defined]
        dropped_before = sum(1 for li in before if li["kept"] == "0")
        kept_shown = int(page.text_content("#kept-count"))  # type: ignore[attr-defined]
        if SHOOT:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")  # type: ignore[attr-defined]
            page.screenshot(path=str(SCREENSHOTS / "week-list.png"))  # type: ignore[attr-defined]
            keyboard.press("?")
            page.screenshot(path=str(SCREENSHOTS / "week-list-keys.png"))  # type: ignore[attr-defined]

        page.reload()  # type: ignore[attr-defined]
        after = {li["id"]: (li["kept"], li["section"]) for li in lines(page)}
        assert int(page.text_content("#kept-count")) == kept_shown  # type: ignore[attr-defined]
        assert kept_shown == len(before) - dropped_before - sum(
            1 for eid, (kept, _) in expected.items() if kept == "0" and eid not in
            {li["id"] for li in before if li["kept"] == "0"})
    assert len(expected) == 60
    assert {eid: after[eid] for eid in expected} == expected
    assert page.errors == []  # type: ignore[attr-defined]
    # The store holds it too, and every key was one recorded action.
    with store.session() as session:
        rows = {str(r.id): ("1" if r.kept else "0", r.section or "")
                for r in session.scalars(select(DigestEntryRow).where(DigestEntryRow.id.in_([int(i) for i in expected])))}
        actions = session.scalar(select(func.count(CuratorAction.id)))
    assert rows == expected
    moved = sum(1 for n, line in enumerate(before[:57]) if n % 3 == 2 and sections[1 + n % 4 - 1] != line["section"])
    assert actions == 19 + 19 + 3 + moved  # drops, keeps, the bulk drop, real moves


def spread_of(page: object, entry_id: str) -> str:
    return page.text_content(f"#row-{entry_id} .spread") or ""  # type: ignore[attr-defined]


def test_s_merges_the_selected_lines_stories_and_splits_one_out(served: tuple[str, Store, date], page: object) -> None:
    base, _store, week = served
    with no_traffic_off_machine():
        page.goto(f"{base}/week?week={week.isoformat()}&view=list&new=0")  # type: ignore[attr-defined]
        shown = page.eval_on_selector_all(  # type: ignore[attr-defined]
            "#triage-list li.row", "els => els.map(e => [e.dataset.entryId, e.querySelector('.source').textContent,"
            " e.querySelector('.spread').textContent])")
        # Two neighbours from different sites, each alone in its story: merged, they are seen in 2.
        first, second = next((a[0], b[0]) for a, b in zip(shown, shown[1:], strict=False)
                             if a[1] != b[1] and a[2] == b[2] == "1 source")
        keyboard = page.keyboard  # type: ignore[attr-defined]
        page.click(f"#row-{first} .source")  # type: ignore[attr-defined]
        keyboard.press("Shift+J")
        keyboard.press("s")
        wait_until(page, f"document.body.dataset.pending === '0' && !!document.querySelector('#row-{first}')")
        assert spread_of(page, first) == spread_of(page, second) == "2 sources"
        page.click(f"#row-{second} .source")  # type: ignore[attr-defined]
        keyboard.press("s")
        wait_until(page, "document.body.dataset.pending === '0'")
        wait_until(page, f"document.querySelector('#row-{second} .spread').textContent === '1 source'")
        assert spread_of(page, first) == "1 source"
    assert page.errors == []  # type: ignore[attr-defined]
