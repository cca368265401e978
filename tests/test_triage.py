"""The triage score on behaviour, through the web app: the curator's keeps and drops in the week
view's list mode over three weeks decide how the fourth week's candidates are ranked."""

from __future__ import annotations

import html as html_lib
import random
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tidings import pipeline
from tidings.config import Config
from tidings.records import ItemRecord
from tidings.store import CuratorAction, DigestEntryRow, Item, Store, open_store
from tidings.triage import Facts, TriageModel
from tidings.web import create_app

WEEKS = [date(2025, 3, 9), date(2025, 3, 16), date(2025, 3, 23), date(2025, 3, 30)]  # Sundays
WORDS = ["Go", "Rust", "数据库", "性能", "云原生", "编译器", "发布", "调度", "内存", "大模型", "测试", "网络"]
DROPPED_DOMAIN = "clickbait.example"
KEPT_AUTHOR = "Alice Chen"
# (domain, author) of each week's candidates: the dropped domain's authors are also elsewhere, and
# the kept author writes on the same domains as everyone else, so only the feature under test differs.
PLAN = [
    (DROPPED_DOMAIN, "Bob"), (DROPPED_DOMAIN, "Carol"), (DROPPED_DOMAIN, "Dan"),
    ("news-one.example", KEPT_AUTHOR), ("news-two.example", KEPT_AUTHOR), ("news-three.example", KEPT_AUTHOR),
    ("news-one.example", "Bob"), ("news-two.example", "Carol"), ("news-three.example", "Dan"),
    ("news-one.example", "Erin"), ("news-two.example", "Frank"), ("news-three.example", "Grace"),
    ("news-one.example", "Carol"), ("news-two.example", "Dan"), ("news-three.example", "Bob"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(tmp_path / "triage.db")
    yield store
    store.close()


def make_client(store: Store) -> TestClient:
    return TestClient(create_app(store, Config()), base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


def csrf_of(client: TestClient) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/search").text)
    assert match
    return match.group(1)


def add_week(store: Store, week: date, rng: random.Random) -> None:
    """The week's candidates, each from its domain's feed, seen on the week's Wednesday."""
    for n, (domain, author) in enumerate(PLAN):
        title = " ".join(rng.sample(WORDS, 3)) + f" 第{n}篇"
        record = ItemRecord(url=f"https://{domain}/{week.isoformat()}/{n}", title=title, author=author,
                            published_at=datetime.combine(week - timedelta(days=4), time(9)),
                            text=f"{title}。" + "这是一篇正文，讲述技术细节与实践经验。" * 20, summary=f"{title} 的摘要。")
        report = pipeline.ingest(store, [record], source_kind="feed", locator=f"https://{domain}/feed.xml")
        with store.session() as session:
            session.execute(update(Item).where(Item.id.in_(report.item_ids)).values(
                seen_at=datetime.combine(week - timedelta(days=4), time(12), UTC)))


def list_rows(client: TestClient, week: date) -> list[tuple[int, str, str]]:
    """(entry id, score, reasons) of the list mode's lines, top to bottom."""
    html = client.get(f"/week?week={week.isoformat()}&view=list&new=0").text
    found = re.findall(r'<li class="row[^"]*" id="row-(\d+)".*?<span class="score">([^<]*)</span>'
                       r'(?:(?:(?!</li>).)*?<span class="reasons">([^<]*)</span>)?', html, re.S)
    return [(int(eid), score, html_lib.unescape(reasons)) for eid, score, reasons in found]


def entry_facts(store: Store, entry_ids: list[int]) -> dict[int, tuple[str, str]]:
    """entry id → (domain, author) of its item."""
    with store.session() as session:
        rows = session.execute(select(DigestEntryRow.id, Item.url, Item.author).join(Item)
                               .where(DigestEntryRow.id.in_(entry_ids))).all()
    return {eid: (url.split("/")[2], author) for eid, url, author in rows}


def test_three_weeks_of_verdicts_rank_the_fourth_week(store: Store) -> None:
    rng = random.Random(17)
    for week in WEEKS:
        add_week(store, week, rng)
    with make_client(store) as client:
        token = csrf_of(client)
        for week in WEEKS[:3]:
            rows = list_rows(client, week)
            assert len(rows) == len(PLAN)
            facts = entry_facts(store, [eid for eid, _, _ in rows])
            for n, (eid, _, _) in enumerate(rows):
                domain, author = facts[eid]
                if domain == DROPPED_DOMAIN:
                    kept = "0"
                elif author == KEPT_AUTHOR:
                    kept = "1"
                else:
                    kept = "1" if n % 2 else "0"  # the rest: half kept, half dropped
                response = client.post(f"/entry/{eid}/keep", data={"csrf": token, "kept": kept, "view": "list"},
                                       follow_redirects=False)
                assert response.status_code == 303
                assert response.headers["location"] == f"/week?week={week.isoformat()}&view=list#row-{eid}"
        with store.session() as session:
            actions = session.scalars(select(CuratorAction)).all()
        assert len(actions) == 3 * len(PLAN) and {a.action for a in actions} == {"keep", "drop"}

        rows = list_rows(client, WEEKS[3])
    assert len(rows) == len(PLAN)
    facts = entry_facts(store, [eid for eid, _, _ in rows])
    order = [facts[eid] for eid, _, _ in rows]
    scores = [float(score) for _, score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(author == KEPT_AUTHOR for _, author in order[:3]), order
    assert all(domain == DROPPED_DOMAIN for domain, _ in order[-3:]), order
    # The reasons say why: the domain's record and the author's.
    top_reasons, bottom_reasons = rows[0][2], rows[-1][2]
    assert f"by an author you keep 100 % of (9 of 9): {KEPT_AUTHOR.lower()}" in top_reasons
    assert f"from a domain you keep 0 % of (0 of 9): {DROPPED_DOMAIN}" in bottom_reasons
    assert scores[0] > 5 > scores[-1]


def test_a_candidates_own_verdict_does_not_raise_its_own_score(store: Store) -> None:
    rng = random.Random(3)
    add_week(store, WEEKS[0], rng)
    with make_client(store) as client:
        token = csrf_of(client)
        rows = list_rows(client, WEEKS[0])
        assert {score for _, score, _ in rows} == {"5.0"}  # cold start, no spread, no classifier: even
        first = rows[0][0]
        client.post(f"/entry/{first}/keep", data={"csrf": token, "kept": "1", "view": "list"})
        after = dict((eid, score) for eid, score, _ in list_rows(client, WEEKS[0]))
    assert after[first] == "5.0"  # leave-one-out: only others' verdicts count for it


def test_cold_start_uses_spread_and_the_classifiers_confidence() -> None:
    model = TriageModel()
    plain = Facts(item_id=1, sources=("feed",), domain="a.example", account="", section="S", words=(), age="",
                  confidence=None)
    sure = Facts(**{**plain.__dict__, "item_id": 2, "confidence": 0.9})
    unsure = Facts(**{**plain.__dict__, "item_id": 3, "confidence": 0.2})
    no_rule = Facts(**{**plain.__dict__, "item_id": 4, "confidence": 0.0})
    assert model.score(plain, 1).value == 5.0
    spread = model.score(plain, 4)
    assert spread.value > 5 and [r.text for r in spread.top_reasons] == ["seen in 4 sources"]
    assert model.score(sure, 1).value > 5 > model.score(unsure, 1).value
    assert model.score(no_rule, 1).value == 5.0  # "no keyword matched" is not a low confidence


def test_unsure_badge_only_for_a_real_low_confidence(store: Store) -> None:
    week = WEEKS[0]
    add_week(store, week, random.Random(1))
    with store.session() as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
        for item in items:  # what the keyword rules leave when nothing matched
            item.section, item.section_origin, item.section_confidence = "🍵 其他", "rules", 0.0
        items[0].section_confidence = 0.2
    with make_client(store) as client:
        html = client.get(f"/week?week={week.isoformat()}").text
    assert html.count("unsure-badge") == 1 and "unsure section (0.20)" in html


def test_merge_and_split_stories_from_the_list(store: Store) -> None:
    """The list mode's merge (lines picked) and split post the stories engineer's functions: the
    spread ("N sources") follows, and splitting a line alone in its story is refused beside it."""
    from tidings.stages.stories import assign_stories

    week = WEEKS[0]
    add_week(store, week, random.Random(5))
    assign_stories(store)
    with make_client(store) as client:
        token = csrf_of(client)
        html = client.get(f"/week?week={week.isoformat()}&view=list&new=0").text
        assert "1 source" in html and "sources</span>" not in html
        rows = list_rows(client, week)
        facts = entry_facts(store, [eid for eid, _, _ in rows])
        one, two = (next(eid for eid, _, _ in rows if facts[eid][0] == d)
                    for d in (DROPPED_DOMAIN, "news-one.example"))
        response = client.post("/week/merge", data={"csrf": token, "entry": [str(one), str(two)]},
                               follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].endswith(f"#row-{one}")
        html = client.get(f"/week?week={week.isoformat()}&view=list&new=0").text
        line = html.split(f'id="row-{two}"', 1)[1].split("</li>", 1)[0]
        assert '<span class="spread">2 sources</span>' in line and f'action="/entry/{two}/split"' in line
        assert client.post(f"/entry/{two}/split", data={"csrf": token}, follow_redirects=False).status_code == 303
        html = client.get(f"/week?week={week.isoformat()}&view=list&new=0").text
        assert "sources</span>" not in html
        refused = client.post(f"/entry/{two}/split", data={"csrf": token})
        assert refused.status_code == 422
        line = refused.text.split(f'id="row-{two}"', 1)[1].split("</li>", 1)[0]
        assert "not split:" in line and "alone in story" in line
        assert client.post("/week/merge", data={"csrf": token, "entry": [str(one)]}).status_code == 400


def test_a_draft_lists_only_what_is_new_since_the_last_published_digest_by_default(store: Store) -> None:
    from tidings import curate
    from tidings.store import Digest

    add_week(store, WEEKS[0], random.Random(8))
    add_week(store, WEEKS[1], random.Random(9))
    with make_client(store) as client:
        client.get(f"/week?week={WEEKS[0].isoformat()}&view=list")  # the first week's draft ...
        with store.session() as session:
            digest = session.scalar(select(Digest).where(Digest.week == WEEKS[0]))
            assert digest is not None
            digest.status = "published"  # ... is published
            old = session.scalar(select(Item.id).where(Item.url.like(f"%/{WEEKS[0].isoformat()}/0")))
            digest.entries = [e for e in digest.entries if e.item_id != old]  # one it left out
        assert old is not None
        curate.assign_to_week(store, [old], WEEKS[1], Config())  # put in the next draft by hand
        default = client.get(f"/week?week={WEEKS[1].isoformat()}&view=list").text
        every = client.get(f"/week?week={WEEKS[1].isoformat()}&view=list&new=0").text
    assert "only new since the digest of 2025-03-09" in default
    assert default.count('<li class="row') == len(PLAN) and every.count('<li class="row') == len(PLAN) + 1


def test_verdicts_update_the_cached_model_as_training_again_would(store: Store) -> None:
    """A view after keeps, drops and moves uses the cached model plus the actions recorded since
    (not a retraining on every verdict), and that is the model trained from scratch: same labels,
    facts and counts, so the same scores."""
    from tidings import triage

    rng = random.Random(23)
    for week in WEEKS[:2]:
        add_week(store, week, rng)
    with make_client(store) as client:
        token = csrf_of(client)
        rows = list_rows(client, WEEKS[0])
        client.post(f"/entry/{rows[0][0]}/keep", data={"csrf": token, "kept": "0", "view": "list"})
        list_rows(client, WEEKS[1])  # the model is trained and cached with one verdict in
        key = (id(store.engine), str(store.engine.url))
        trained_at, cached = triage._models[key]
        for n, (eid, _, _) in enumerate(rows):
            client.post(f"/entry/{eid}/keep", data={"csrf": token, "kept": "1" if n % 3 else "0", "view": "list"})
        # Judged again (a drop, then a keep), and a move, which counts as kept with its new section.
        client.post(f"/entry/{rows[3][0]}/keep", data={"csrf": token, "kept": "1", "view": "list"})
        section = Config().section_names[1]
        client.post(f"/entry/{rows[1][0]}/move", data={"csrf": token, "section": section, "view": "list"})
        with store.session() as session:
            updated = triage._with_new_actions(session, trained_at, cached, triage._signature(session))
            fresh = triage.train(session)
        assert updated is not None and updated is not cached
        assert updated.labels == fresh.labels and updated.facts == fresh.facts
        assert dict(updated.kept) == dict(fresh.kept) and dict(updated.total) == dict(fresh.total)
        assert len(cached.labels) == 1  # the model being served was not changed under its readers
        shown = dict((eid, score) for eid, score, _ in list_rows(client, WEEKS[1]))
    with store.session() as session:
        facts = triage.item_facts(session, dict.fromkeys(
            session.scalars(select(DigestEntryRow.item_id).where(DigestEntryRow.id.in_(shown))), WEEKS[1]))
        entry_of = dict(session.execute(select(DigestEntryRow.item_id, DigestEntryRow.id)
                                        .where(DigestEntryRow.id.in_(shown))).all())
    assert {entry_of[i]: f"{fresh.score(f, 1).value:.1f}" for i, f in facts.items()} == shown


def test_the_list_view_finds_every_change_to_the_draft_without_loading_it(store: Store) -> None:
    """The week view checks the draft column by column (``curate.refresh_week``) and rebuilds it
    only when something changed: a new candidate, an item set aside, an item's new title, summary or
    section. Each change shows in the list; with none, the draft is found current."""
    from tidings import curate
    from tidings.store import Digest

    config = Config()
    add_week(store, WEEKS[0], random.Random(4))

    def current() -> bool:
        with store.session() as session:
            digest_id = session.scalar(select(Digest.id).where(Digest.week == WEEKS[0]))
            assert digest_id is not None
            return curate._draft_is_current(session, digest_id, WEEKS[0], config)

    def titles() -> set[str]:
        html = make_client(store).get(f"/week?week={WEEKS[0].isoformat()}&view=list&new=0").text
        return {html_lib.unescape(t) for t in re.findall(r'class="title"[^>]*>([^<]*)<', html)}

    assert len(titles()) == len(PLAN) and current()
    with store.session() as session:
        first, second = session.scalars(select(Item).order_by(Item.id).limit(2)).all()
        first.title = "A title the extractor found again"
        second.status = "error"
        gone = second.title
    assert not current()
    shown = titles()
    assert "A title the extractor found again" in shown and gone not in shown and len(shown) == len(PLAN) - 1
    assert current()
    with store.session() as session:
        session.scalars(select(Item).order_by(Item.id)).first().summary = "A summary written again."  # type: ignore[union-attr]
    assert not current()
    titles()
    with store.session() as session:
        entry = session.scalar(select(DigestEntryRow).order_by(DigestEntryRow.id))
        assert entry is not None and entry.summary_raw == "A summary written again."
    record = ItemRecord(url="https://news-one.example/late", title="一篇晚到的文章", text="晚到的正文，讲述细节。" * 30,
                        summary="晚到的摘要。")
    report = pipeline.ingest(store, [record], source_kind="feed", locator="https://news-one.example/feed.xml")
    with store.session() as session:
        session.execute(update(Item).where(Item.id.in_(report.item_ids)).values(
            seen_at=datetime.combine(WEEKS[0] - timedelta(days=2), time(12), UTC)))
    assert not current()
    shown = titles()
    assert "一篇晚到的文章" in shown and len(shown) == len(PLAN) and current()
