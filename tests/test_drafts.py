"""Drafts and the one stage loop, at the library level, on a real SQLite store: the first assembly of a
draft already holds its entries' text, set-aside items stay out of it (and are listed for the week
they were asked for), and ``pipeline.run`` is the one entry point with its ``force`` rule."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pg import worker_for

from tidings import curate, pipeline
from tidings.config import Config
from tidings.errors import UsageError
from tidings.publish.docusaurus import render_docusaurus
from tidings.records import ItemRecord
from tidings.store import Item, Store, open_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pages"
PAST_WEEK = date(2024, 6, 9)


@pytest.fixture()
def store(db_url: str) -> Store:
    """Each test runs on both dialects: a SQLite file, then a fresh PostgreSQL database."""
    return open_store(db_url)


def _ingest(store: Store, *records: ItemRecord) -> list[int]:
    return pipeline.ingest(store, list(records), source_kind="test", locator="drafts").item_ids


def _set(store: Store, item_id: int, **values: object) -> None:
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        for name, value in values.items():
            setattr(item, name, value)


def test_the_first_assembly_of_a_draft_renders_its_entries(store: Store) -> None:
    config = Config()
    [item_id] = _ingest(store, ItemRecord(url="https://example.com/a", title="第一篇", summary="人写的摘要。"))
    _set(store, item_id, status="extracted", text="正文。" * 50, section="📒 后端相关")
    week = curate.latest_week_end(curate.today(config))
    if week < curate.today(config):
        week = date.fromordinal(week.toordinal() + 7)
    curate.assemble_week(store, week, config)  # the very first call creates the draft
    doc = curate.load_doc(store, week, config)
    assert doc is not None
    text = render_docusaurus(doc)
    assert "[《第一篇》](https://example.com/a)。人写的摘要。" in text


def test_failed_items_are_set_aside_for_the_week_they_were_asked_for(store: Store) -> None:
    config = Config()
    good, bad = _ingest(
        store,
        ItemRecord(url="https://example.com/good", title="好文章"),
        ItemRecord(url="https://example.com/gone", title="失效链接"),
    )
    _set(store, good, status="extracted", text="正文。" * 50)
    _set(store, bad, status="error", error_reason="http_404", error="404 Not Found")
    curate.assign_to_week(store, [good, bad], PAST_WEEK, config)
    doc = curate.load_doc(store, PAST_WEEK, config)
    assert doc is not None
    urls = {entry.url_raw for entry in doc.blocks if hasattr(entry, "url_raw")}
    assert urls == {"https://example.com/good"}
    with store.session() as session:
        aside = curate.set_aside(session, PAST_WEEK, config)
        assert [(item.id, item.error_reason) for item in aside] == [(bad, "http_404")]
        assert curate.set_aside(session, date(2024, 6, 16), config) == []


def test_an_entry_whose_item_fails_later_leaves_the_draft(store: Store) -> None:
    config = Config()
    [item_id] = _ingest(store, ItemRecord(url="https://example.com/later", title="后来失效"))
    _set(store, item_id, status="extracted", text="正文。" * 50)
    curate.assign_to_week(store, [item_id], PAST_WEEK, config)
    _set(store, item_id, status="rejected", error_reason="no_article")
    curate.assemble_week(store, PAST_WEEK, config)
    doc = curate.load_doc(store, PAST_WEEK, config)
    assert doc is not None and not [b for b in doc.blocks if hasattr(b, "url_raw")]


def test_run_refuses_unknown_stages(store: Store) -> None:
    with pytest.raises(UsageError, match="unknown stage"):
        pipeline.run(store, Config(), stages=["fetch", "publish"])


def test_forced_summarize_recomputes_machine_summaries_and_keeps_human_ones(store: Store) -> None:
    config = Config()
    text = (EXAMPLES / "go-iterators.html").read_text(encoding="utf-8")
    machine, human = _ingest(
        store,
        ItemRecord(url="https://example.com/m", title="Go 1.23 的 range over func"),
        ItemRecord(url="https://example.com/h", title="Go 1.23", summary="策展人写的。"),
    )
    from tidings.stages.extract import extract

    body = extract(text.encode(), url="https://example.com/m").text
    _set(store, machine, status="extracted", text=body, summary="旧的机器摘要。", summary_origin="extractive")
    _set(store, human, status="extracted", text=body)
    [report] = pipeline.run(store, config, stages=["summarize"], force=True)
    assert report.done == 1
    with store.session() as session:
        assert session.get(Item, machine).summary not in (None, "旧的机器摘要。")
        assert session.get(Item, human).summary == "策展人写的。"


def test_forcing_an_item_with_nothing_to_summarize_keeps_its_old_summary(store: Store) -> None:
    [item_id] = _ingest(store, ItemRecord(url="https://example.com/code", title="代码"))
    _set(store, item_id, status="extracted", text="}\n};\n", summary="旧摘要。", summary_origin="extractive")
    [report] = pipeline.run(store, Config(), stages=["summarize"], item_ids=[item_id], force=True)
    assert report.done == 0
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None and (item.summary, item.summary_origin) == ("旧摘要。", "extractive")


def test_the_store_refuses_an_unknown_item_status(store: Store) -> None:
    from tidings.errors import StoreError
    from tidings.store import ItemStatus

    [item_id] = _ingest(store, ItemRecord(url="https://example.com/s", title="状态"))
    with pytest.raises(StoreError, match="unknown item status 'fetched'"):
        _set(store, item_id, status="fetched")  # the old docstring's state that nothing ever set
    _set(store, item_id, status=ItemStatus.REJECTED)
    with store.session() as session:
        assert session.get(Item, item_id).status == "rejected"


def test_run_for_an_empty_week_writes_nothing_and_names_the_week_with_items(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tidings.cli import run_cli

    db = db_url
    page = EXAMPLES / "go-iterators.html"
    assert run_cli(["--db", db, "add", str(page)]) == 0
    capsys.readouterr()
    # 2024-06-08 is a Saturday: snapped to its week end, which holds nothing (the page was seen today).
    with worker_for(db):  # on PostgreSQL the stages are queue jobs a worker runs
        assert run_cli(["--db", db, "run", "--week", "2024-06-08", "--out", str(tmp_path / "blog")]) == 0
    err = capsys.readouterr().err
    assert "2024-06-08 is not a week end; using 2024-06-09" in err
    assert "nothing for week 2024-06-09" in err and "the newest items are in the week ending" in err
    assert not (tmp_path / "blog").exists()


def test_forced_stages_over_the_corpus_redo_machine_results_and_keep_human_ones(
    store: Store, corpus_dir: Path
) -> None:
    """``force`` over every item, on the real pages: machine summaries and sections are recomputed
    (to what a first run gives: both are deterministic), a human's are never touched, and an item the
    stage can say nothing about keeps its old result."""
    from tidings.stages.work import extract_page

    config = Config(workers=1)
    records = []
    for page in sorted((corpus_dir / "html").glob("*.html")):
        found = extract_page(page.read_bytes(), None, f"https://corpus.example/{page.name}")
        if found.error_reason is None:
            records.append(ItemRecord(url=f"https://corpus.example/{page.name}", title=found.title, text=found.text))
    assert len(records) >= 20
    ids = _ingest(store, *records)
    code = _ingest(store, ItemRecord(url="https://corpus.example/code-only", title="代码", text="}\n};\n"))[0]
    pipeline.run(store, config, stages=["summarize", "classify"])
    with store.session() as session:
        first = {i: (session.get(Item, i).summary, session.get(Item, i).section) for i in ids}
    assert all(summary and section for summary, section in first.values())
    human, machine = ids[0], ids[1:]
    _set(store, human, summary="策展人写的。", summary_origin="human", section="📒 其他", section_origin="human",
         section_confidence=1.0)
    for item_id in machine:
        _set(store, item_id, summary="旧的机器摘要。", summary_origin="extractive", section="📒 其他",
             section_origin="rules", section_confidence=0.1)
    _set(store, code, summary="旧摘要。", summary_origin="extractive", section="📒 其他", section_origin="rules")
    summarized, classified = pipeline.run(store, config, stages=["summarize", "classify"], force=True)
    assert summarized.done == len(machine) and classified.done == len(machine) + 1
    with store.session() as session:
        for item_id in machine:
            item = session.get(Item, item_id)
            assert item is not None and (item.summary, item.section) == first[item_id], item.url
        item = session.get(Item, human)
        assert item is not None and (item.summary, item.section) == ("策展人写的。", "📒 其他")
        assert (item.summary_origin, item.section_origin) == ("human", "human")
        item = session.get(Item, code)
        assert item is not None and (item.summary, item.summary_origin) == ("旧摘要。", "extractive")
