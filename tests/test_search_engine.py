"""The search engine (segments of numpy arrays beside the store) stays consistent with the store: edits, deletes and
tag changes show up in the next search, a rebuild gives the same results, a run killed in the
middle of indexing resumes, a lost or stale engine directory is rebuilt, and a change made by
another process is seen. All on the real store, with the social and notes corpora imported
through the CLI."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from corpusdb import run_cli
from sqlalchemy import select, text

from tidings.config import Config
from tidings.search.index import current_engine, index_stats, refresh_index
from tidings.search.query import Filters, filter_sql
from tidings.search.rank import rank, search
from tidings.search.storage import connect
from tidings.store import Item, ItemTag, Store, open_store

CONFIG = Config()
QUERIES = ["Mixtral 路由", "可解释性", "CLAUDE.md", "幻觉", "Gemini TPU", "LoRA ControlNet", "思维链监控",
           "whisper 语音识别", "MLX 苹果", "RLHF"]
"""Questions the two corpora answer, for comparing whole result lists."""


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("engine") / "corpus.db"
    run_cli(db, "import", str(corpus_dir / "social"))
    run_cli(db, "import", str(corpus_dir / "notes"))
    run_cli(db, "index")
    return db


@pytest.fixture
def scratch(corpus_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the store file (its engine directory is not copied: the first search
    finds it missing and builds it, which is itself under test)."""
    db = tmp_path / "scratch.db"
    with sqlite3.connect(corpus_db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(corpus_db, db)
    st = open_store(db)
    yield st
    st.close()


def ranked(store: Store) -> dict[str, list[int]]:
    return {q: [i for i, _s in rank(store, q, config=CONFIG, limit=10)] for q in QUERIES}


def ids_for(store: Store, query: str) -> list[int]:
    return [h.item.id for h in search(store, query, config=CONFIG, limit=10).hits]


def engine_docs(store: Store) -> int:
    with connect(store) as conn:
        return current_engine(conn, CONFIG).reader.num_docs()


def live_items(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM items WHERE duplicate_of_id IS NULL")).scalar_one()


def test_a_copied_store_builds_its_engine_index_and_answers(scratch: Store) -> None:
    db = Path(str(scratch.engine.url.database))
    assert not Path(f"{db}.search").exists()
    hits = search(scratch, "Mixtral 路由", config=CONFIG).hits
    assert "Mixtral AI 公布 MoE 8x7B 详细细节" in (hits[0].item.title or "")
    assert Path(f"{db}.search").is_dir()
    assert engine_docs(scratch) == index_stats(scratch)["indexed"] == live_items(scratch)


def test_edit_delete_and_tag_change_show_up_in_the_next_search(scratch: Store) -> None:
    with scratch.session() as session:
        item = session.scalars(select(Item).where(Item.title == "Genie 3.0")).one()
        item_id = item.id
        item.title = "Genie 3.0 zorblaxian"
    assert ids_for(scratch, "zorblaxian") == [item_id]
    with scratch.engine.begin() as conn:  # a raw write, as another tool would make it
        conn.execute(text("UPDATE items SET title = 'Genie 3.0 quibbleton' WHERE id = :id"), {"id": item_id})
    assert ids_for(scratch, "zorblaxian") == []
    assert ids_for(scratch, "quibbleton") == [item_id]

    with scratch.session() as session:
        session.add(ItemTag(item_id=item_id, tag="frobnicator"))
    assert ids_for(scratch, "frobnicator") == [item_id]
    with scratch.engine.begin() as conn:
        conn.execute(text("DELETE FROM item_tags WHERE tag = 'frobnicator'"))
    assert ids_for(scratch, "frobnicator") == []

    with scratch.engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE id = :id"), {"id": item_id})
    assert ids_for(scratch, "quibbleton") == []
    assert engine_docs(scratch) == live_items(scratch)


def test_rebuild_gives_identical_results(scratch: Store) -> None:
    before = ranked(scratch)
    assert all(before.values())
    db = Path(str(scratch.engine.url.database))
    run_cli(db, "index", "--rebuild")
    assert ranked(scratch) == before
    run_cli(db, "index", "--rebuild")
    assert ranked(scratch) == before
    assert engine_docs(scratch) == index_stats(scratch)["indexed"]


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from tidings.config import Config
    from tidings.search import engine, index
    from tidings.store import open_store

    index._BATCH = index._BULK_BATCH = 40   # several batches over the two corpora
    where, after = sys.argv[2], int(sys.argv[3])
    commits = 0
    original = engine.EngineIndex.write_marker

    def write_marker(self, index_id, generation):
        global commits
        original(self, index_id, generation)
        commits += 1
        if where == "engine" and commits == after:
            os.kill(os.getpid(), signal.SIGKILL)   # the engine committed, SQLite has not

    def progress(done, total, stage):
        if where == "store" and done >= after * 40:
            os.kill(os.getpid(), signal.SIGKILL)   # both committed this batch, more to come

    engine.EngineIndex.write_marker = write_marker
    index.rebuild_index(open_store(sys.argv[1]), Config(), progress=progress)
    """
)


@pytest.mark.parametrize("where", ["engine", "store"])
def test_a_run_killed_mid_index_resumes(scratch: Store, where: str) -> None:
    expected = ranked(scratch)  # the copy is indexed whole first: the reference results
    db = Path(str(scratch.engine.url.database))
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(db), where, "3"],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stats = index_stats(scratch)
    assert stats["queued"] > 0 and stats["indexed"] < live_items(scratch)  # it really stopped midway
    assert refresh_index(scratch, CONFIG) == stats["queued"]
    assert index_stats(scratch)["queued"] == 0
    assert engine_docs(scratch) == index_stats(scratch)["indexed"] == live_items(scratch)
    resumed = ranked(scratch)
    # The same items answer each question; only BM25's statistics may differ by the few documents
    # deleted and added again, so the order is compared on the top three.
    assert {q: set(v) for q, v in resumed.items()} == {q: set(v) for q, v in expected.items()}
    assert {q: v[:3] for q, v in resumed.items()} == {q: v[:3] for q, v in expected.items()}


def test_a_lost_or_foreign_engine_directory_is_rebuilt(scratch: Store, corpus_db: Path) -> None:
    expected = ranked(scratch)
    db = Path(str(scratch.engine.url.database))
    shutil.rmtree(f"{db}.search")
    assert ranked(scratch) == expected
    # Another store's engine directory in its place (a restore from the wrong backup).
    shutil.rmtree(f"{db}.search")
    shutil.copytree(f"{corpus_db}.search", f"{db}.search")
    with scratch.engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE title = 'Genie 3.0'"))
    assert "Genie 3.0" not in [h.item.title for h in search(scratch, "Genie 3.0", config=CONFIG).hits]
    assert engine_docs(scratch) == live_items(scratch)


_OTHER_PROCESS = textwrap.dedent(
    """
    import sqlite3, sys
    from tidings.config import Config
    from tidings.search.index import refresh_index
    from tidings.store import open_store

    with sqlite3.connect(sys.argv[1]) as conn:
        conn.execute("UPDATE items SET title = 'Genie 3.0 wibbleflux' WHERE title = 'Genie 3.0'")
    refresh_index(open_store(sys.argv[1]), Config())
    """
)


def test_another_processs_change_is_seen_without_refreshing_here(scratch: Store) -> None:
    assert ids_for(scratch, "wibbleflux") == []  # this process has the engine open now
    db = Path(str(scratch.engine.url.database))
    done = subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(db)], capture_output=True, text=True,
                          timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr
    hits = search(scratch, "wibbleflux", config=CONFIG, refresh=False).hits
    assert [h.item.title for h in hits] == ["Genie 3.0 wibbleflux"]


def test_a_pasted_page_as_a_query_is_answered(corpus_db: Path, corpus_dir: Path) -> None:
    store = open_store(corpus_db)
    try:
        page = (corpus_dir / "notes" / "ainotes-part1.md").read_text(encoding="utf-8")[:30_000]
        page = re.sub(r'["“”「」:-]', " ", page)  # words only: quotes, colons and minus signs are query syntax
        hits = search(store, page, config=CONFIG, limit=5).hits
        assert len(hits) == 5  # bounded (the first concepts rank), no error
        assert search(store, 'x" OR -"( AND NEAR(a b) *', config=CONFIG).mode == "bm25"  # no query syntax to break
    finally:
        store.close()


def test_hits_carry_each_items_own_view(scratch: Store) -> None:
    """Hits are built from two light queries, not from ORM objects; what they carry must still be
    exactly ``Item.view(with_text=False)``, URLs, tags and links in their order included."""
    with scratch.session() as session:
        item = session.scalars(select(Item).where(Item.title == "Genie 3.0")).one()
        item.tag_rows.extend([ItemTag(tag="zeta-tag"), ItemTag(tag="alpha-tag")])
        item.extra = {**(item.extra or {}), "title_derived": True}
        item.published_at = datetime(2024, 2, 29, 13, 5, 7, 123456)
    seen = 0
    for query in [*QUERIES, "Genie 3.0"]:
        hits = search(scratch, query, config=CONFIG, limit=10).hits
        with scratch.session() as session:
            for hit in hits:
                assert hit.item == session.get(Item, hit.item.id).view(with_text=False), (query, hit.item.id)
                seen += 1
    assert seen >= 50
    genie = search(scratch, "Genie 3.0", config=CONFIG, limit=10).hits
    mine = next(h.item for h in genie if h.item.title == "Genie 3.0")
    assert mine.tags[-2:] == ["zeta-tag", "alpha-tag"] and mine.title_derived
    assert mine.published_at == datetime(2024, 2, 29, 13, 5, 7, 123456)
    assert search(scratch, "Genie 3.0", config=CONFIG, limit=10).hits[0].to_json()["published_at"] is not None


def test_the_kept_reader_and_counts_follow_a_new_item(scratch: Store) -> None:
    """The engine keeps one reader and its terms' document counts per index state: an item added
    after the first search is found by the next one, and counted."""
    assert ids_for(scratch, "Mixtral 路由")  # the reader and the counts are taken now
    with connect(scratch) as conn:
        before = current_engine(conn, CONFIG).reader.frequency("mixtral")
        assert current_engine(conn, CONFIG).reader.frequency("plumbixel") == 0
    with scratch.session() as session:
        words = "Mixtral plumbixel"  # in every field: still one document
        session.add(Item(url="https://example.org/plumbixel", title=words, summary=words, text=words, note=words,
                         author=words, kind="article", status="extracted"))
    hits = search(scratch, "plumbixel", config=CONFIG).hits
    assert [h.item.title for h in hits] == ["Mixtral plumbixel"]
    with connect(scratch) as conn:
        assert current_engine(conn, CONFIG).reader.frequency("plumbixel") == 1
        assert current_engine(conn, CONFIG).reader.frequency("mixtral") == before + 1


def test_snippet_marks_follow_stems_phrases_and_whole_words() -> None:
    """``mark_words`` finds candidates by a regular expression, then stems: an inflected English word
    is marked, a multi-word form only where its words are consecutive, a word containing a form's
    word (大模型 for 大) never, and mixed-script words compare as they are."""
    from tidings.search.snippets import mark_words
    from tidings.search.terms import stem

    forms = [tuple(stem(w) for w in form) for form in [("embeddings",), ("大", "模型"), ("node.js",),
                                                        ("run", "fast"), ("ai芯片",)]]
    text = "we embedding 大 模型 大 node.js embeddings 模型 大模型 running fast run fastest ai芯片 ai"
    marked = mark_words(text, forms).replace("\x02", "[").replace("\x03", "]")
    assert marked == ("we [embedding] [大] [模型] 大 [node.js] [embeddings] 模型 大模型 [running] [fast] run fastest "
                      "[ai芯片] ai")
    assert mark_words("", forms) == "" and mark_words(text, []) == text


def test_hit_views_equal_item_view_on_both_stores(db_url: str) -> None:
    """The views are read with plain SQL and each column type's own result processor, on SQLite
    and on PostgreSQL alike: every field, the dates, the JSON and the lists in their order."""
    from tidings.store import ItemLink, ItemUrl

    store = open_store(db_url)
    try:
        with store.session() as session:
            for n in range(3):
                session.add(Item(
                    url=f"https://example.org/quorvex/{n}", title=f"quorvex {n}", summary="quorvex summary",
                    note="a note", author="Ann", author_handle="ann", section="AI", section_confidence=0.625,
                    section_origin="classifier", category="c", language="en", status="extracted", kind="post",
                    published_at=datetime(2024, 2, 29, 13, 5, 7, 123456), seen_at=datetime(2024, 3, 1, 8, 0),
                    extra={"title_derived": n == 1}, text="quorvex body",
                    urls=[ItemUrl(url=f"https://example.org/quorvex/{n}?b"), ItemUrl(url=f"https://example.org/q{n}?a")],
                    tag_rows=[ItemTag(tag="zeta"), ItemTag(tag="alpha")],
                    link_rows=[ItemLink(url="https://z.example/"), ItemLink(url="https://a.example/")],
                ))
            session.add(Item(url="https://example.org/quorvex/bare", title="quorvex bare", status="pending"))
        hits = search(store, "quorvex", config=CONFIG, limit=10).hits
        assert len(hits) == 4
        with store.session() as session:
            for hit in hits:
                assert hit.item == session.get(Item, hit.item.id).view(with_text=False)
        shown = {h.item.title: h.item for h in hits}
        assert shown["quorvex 1"].title_derived and shown["quorvex 1"].tags == ["zeta", "alpha"]
        assert shown["quorvex 1"].link == "https://example.org/quorvex/1?b" and shown["quorvex bare"].urls == []
        assert shown["quorvex 0"].published_at == datetime(2024, 2, 29, 13, 5, 7, 123456)
    finally:
        store.close()


def _sql_selection(store: Store, filters: Filters) -> set[int]:
    """The indexed items ``query.filter_sql`` selects: what the engine's own filters must equal."""
    clauses, params = filter_sql(filters, CONFIG)
    with connect(store) as conn:
        return {r[0] for r in conn.execute(
            "SELECT search_docs.item_id FROM search_docs JOIN items ON items.id = search_docs.item_id WHERE "
            + " AND ".join(clauses), params)}


@pytest.mark.parametrize("filters", [
    Filters(authors=["dotey"]), Filters(authors=["@DOTEY"]), Filters(authors=["宝玉"]), Filters(authors=["a"]),
    Filters(authors=["_"]), Filters(authors=["Barret_China", "karpathy"]), Filters(authors=["k%y"]),
    Filters(authors=["nobody-at-all"]), Filters(kinds=["note"]), Filters(kinds=["POST", "blog"]),
    Filters(since="2023-12-10"), Filters(until="2023-11-30"), Filters(since="2023-12-01", until="2023-12-09"),
    Filters(since="2024-03-01", until="2024-03-31"), Filters(authors=["dotey"], until="2023-12-20", kinds=["post"]),
], ids=repr)
def test_engine_filters_select_what_the_sql_filters_select(scratch: Store, filters: Filters) -> None:
    """``author:``, ``kind:`` and ``since:``/``until:`` are checked by the engine (issue 16, speed),
    with SQL's own semantics (a handle equal in ASCII lower case, a name ``LIKE`` the value, wildcards
    included): over a word most items hold, the ranked hits are exactly the items the SQL selects
    among those holding it, in the order of the unfiltered ranking."""
    word = "的"  # in nearly every Chinese post and note
    everything = rank(scratch, word, config=CONFIG, limit=100_000)
    expected = [i for i, _s in everything if i in _sql_selection(scratch, filters)]
    filtered = rank(scratch, word, config=CONFIG, filters=filters, limit=100_000)
    assert [i for i, _s in filtered] == expected
    assert dict(filtered) == {i: s for i, s in everything if i in set(expected)}  # the filters score nothing
    if filters.authors != ["nobody-at-all"] and filters.since != "2024-03-01":
        assert expected  # the case tests something


def test_a_synonym_phrase_is_indexed_as_one_compound_word(scratch: Store) -> None:
    """A multi-word form of a synonym set (大 模型, large language model) is also indexed as one word:
    the items holding the compound are exactly those where the form's words stand one after another
    in a word field (stemmed, as the engine compares words), and a configured set with a new
    multi-word form re-indexes (the index signature changes) so its compound is found."""
    from tidings.search.index import compound_forms, index_signature
    from tidings.search.terms import FIELDS, WORD_FIELDS, compound_term, stem

    assert ids_for(scratch, "大模型 幻觉 vector database")  # indexes the copy
    with connect(scratch) as conn:
        reader = current_engine(conn, CONFIG).reader
        rows = conn.execute(f"SELECT rowid, {', '.join(WORD_FIELDS)} FROM search_fts").fetchall()
    assert len(WORD_FIELDS) < len(FIELDS)
    found = 0
    for form in [("大", "模型"), ("large", "language", "model"), ("ai", "agent")]:
        stems = tuple(stem(w) for w in form)
        assert stems in compound_forms(CONFIG)
        compound = {int(reader.ids[p]) for positions, _i in reader.postings(stem(compound_term(stems)))
                    for p in positions}
        consecutive = set()
        for item_id, *fields in rows:
            for value in fields:
                words = [stem(w) for w in (value or "").split(" ")]
                if any(tuple(words[i : i + len(stems)]) == stems for i in range(len(words))):
                    consecutive.add(item_id)
        assert compound == consecutive, form
        found += len(compound)
        held, _count = reader.conjunction(list(stems))  # every word somewhere: a superset
        assert compound <= {int(reader.ids[p]) for positions, _i in held for p in positions}
    assert found > 10

    custom = Config.model_validate({"search": {"synonyms": [["zorvex quantum", "qz-drive"]]}})
    assert index_signature(custom) != index_signature(CONFIG)
    with scratch.session() as session:
        session.add(Item(url="https://example.org/zq", title="The zorvex quantum engine", kind="article",
                         status="extracted"))
    assert ids_for(scratch, "qz-drive") == []  # the default synonyms do not know it
    assert [h.item.title for h in search(scratch, "qz-drive", config=custom).hits] == ["The zorvex quantum engine"]
    with connect(scratch) as conn:
        assert current_engine(conn, custom).reader.frequency("zorvex_quantum") == 1


def _manifest(store: Store) -> dict:
    import json

    db = Path(str(store.engine.url.database))
    return json.loads(Path(f"{db}.search/tidings-index.json").read_text(encoding="utf-8"))


def _segment_dirs(store: Store) -> set[str]:
    db = Path(str(store.engine.url.database))
    return {p.name for p in Path(f"{db}.search").iterdir() if p.is_dir()}


def test_small_changes_pile_up_as_segments_and_merge(scratch: Store) -> None:
    """Each refresh that indexes something writes one segment; an edited item's old document is
    superseded (found by its new words only), a deleted one's is gone, past eight newer segments they
    are merged among themselves, and once they hold a quarter of the base's documents they are merged
    into a new base. Whatever the segments, merging them all ranks exactly as a rebuild does."""
    from tidings.search import engine as engine_module

    run_cli(Path(str(scratch.engine.url.database)), "index", "--rebuild")  # ends with one base
    assert len(_manifest(scratch)["segments"]) == 1
    with scratch.session() as session:
        items = list(session.scalars(select(Item).where(Item.duplicate_of_id.is_(None)).order_by(Item.id)))
        ids = [i.id for i in items]
    counts = []
    for n, item_id in enumerate(ids[:14]):
        with scratch.engine.begin() as conn:
            conn.execute(text("UPDATE items SET title = :t WHERE id = :id"), {"t": f"glimmerquad{n} edited", "id": item_id})
        assert ids_for(scratch, f"glimmerquad{n}") == [item_id]
        counts.append(len(_manifest(scratch)["segments"]))
        assert set(_manifest(scratch)["segments"]) <= _segment_dirs(scratch)  # every listed segment exists
    assert counts[:8] == list(range(2, 10))  # the base and one newer segment per change
    assert counts[8] == 2 and counts[-1] == 2 + 5  # the ninth newer segment: all nine merged into one
    assert max(counts) == 1 + engine_module._MAX_SEGMENTS
    assert ids_for(scratch, "glimmerquad0") == [ids[0]]  # superseded twice over, still one document
    with scratch.engine.begin() as conn:
        conn.execute(text("DELETE FROM items WHERE id = :id"), {"id": ids[1]})
    assert ids_for(scratch, "glimmerquad1") == []
    assert engine_docs(scratch) == live_items(scratch)
    # Enough changes to pass a quarter of the base: one new base.
    with scratch.engine.begin() as conn:
        conn.execute(text("UPDATE items SET note = 'zephyrine' WHERE id IN (SELECT id FROM items ORDER BY id LIMIT :n)"),
                     {"n": len(ids) // 3})
    assert len(ids_for(scratch, "zephyrine")) == 10
    assert len(_manifest(scratch)["segments"]) == 1
    incremental = ranked(scratch)
    run_cli(Path(str(scratch.engine.url.database)), "index", "--rebuild")
    assert ranked(scratch) == incremental


_KILLED_MERGE = textwrap.dedent(
    """
    import os, signal, sys
    from tidings.config import Config
    from tidings.search import engine, index
    from tidings.store import open_store

    index._BATCH = index._BULK_BATCH = 40
    original = engine.Segment.save

    def save(self, directory):
        original(self, directory)
        if self.stats is not None:   # the merged base is on disk; the manifest does not list it yet
            os.kill(os.getpid(), signal.SIGKILL)

    engine.Segment.save = save
    index.rebuild_index(open_store(sys.argv[1]), Config())
    """
)


def test_a_run_killed_while_merging_loses_nothing(scratch: Store) -> None:
    """Killed after writing the merged base and before the manifest names it: the batches' segments
    still answer every question (none is queued), and the next change removes the orphan."""
    expected = ranked(scratch)
    db = Path(str(scratch.engine.url.database))
    killed = subprocess.run([sys.executable, "-c", _KILLED_MERGE, str(db)], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    listed = set(_manifest(scratch)["segments"])
    orphans = _segment_dirs(scratch) - listed
    assert len(listed) > 2 and orphans  # the batches' segments, and the merged base nobody lists
    assert index_stats(scratch)["queued"] == 0
    assert engine_docs(scratch) == index_stats(scratch)["indexed"] == live_items(scratch)
    resumed = ranked(scratch)
    assert {q: set(v) for q, v in resumed.items()} == {q: set(v) for q, v in expected.items()}
    with scratch.engine.begin() as conn:
        conn.execute(text("UPDATE items SET title = 'Genie 3.0 quaffle' WHERE title = 'Genie 3.0'"))
    assert [h.item.title for h in search(scratch, "quaffle", config=CONFIG).hits] == ["Genie 3.0 quaffle"]
    assert not (_segment_dirs(scratch) & orphans)


WORDS = ["quaxel", "brindle", "vortique", "snarf", "plumbo", "zintor", "gravelle", "mottle"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_changes_keep_the_engine_equal_to_the_store(tmp_path: Path, seed: int) -> None:
    """Random inserts, edits, tag changes and deletes, with searches between some of them: each made-up
    word finds exactly the items whose title or tags hold it now, whatever segments and merges the
    changes left behind, and merging them all ranks exactly as a rebuild does."""
    import random

    rng = random.Random(seed)
    store = open_store(tmp_path / "random.db")
    try:
        live: dict[int, tuple[str, list[str]]] = {}
        for step in range(120):
            action = rng.random()
            if action < 0.45 or not live:
                title = " ".join(rng.sample(WORDS, 2))
                tags = rng.sample(WORDS, rng.randint(0, 1))
                with store.session() as session:
                    item = Item(url=f"https://example.org/{seed}/{step}", title=title, kind="article", status="extracted",
                                tag_rows=[ItemTag(tag=t) for t in tags])
                    session.add(item)
                    session.flush()
                    live[item.id] = (title, tags)
            elif action < 0.7:
                item_id = rng.choice(sorted(live))
                title = " ".join(rng.sample(WORDS, 2))
                with store.engine.begin() as conn:
                    conn.execute(text("UPDATE items SET title = :t WHERE id = :id"), {"t": title, "id": item_id})
                live[item_id] = (title, live[item_id][1])
            elif action < 0.8:
                item_id = rng.choice(sorted(live))
                with store.engine.begin() as conn:
                    conn.execute(text("DELETE FROM item_tags WHERE item_id = :id"), {"id": item_id})
                live[item_id] = (live[item_id][0], [])
            else:
                item_id = rng.choice(sorted(live))
                with store.engine.begin() as conn:
                    conn.execute(text("DELETE FROM items WHERE id = :id"), {"id": item_id})
                del live[item_id]
            if rng.random() < 0.3:  # a search drains the queue: one more segment
                word = rng.choice(WORDS)
                found = {i for i, _s in rank(store, word, config=CONFIG, limit=1000)}
                assert found == {i for i, (t, tags) in live.items() if word in t.split() or word in tags}, (seed, step)
        for word in WORDS:
            found = {i for i, _s in rank(store, word, config=CONFIG, limit=1000)}
            assert found == {i for i, (t, tags) in live.items() if word in t.split() or word in tags}, (seed, word)
        with connect(store) as conn:
            current_engine(conn, CONFIG).optimize()
            assert len(_manifest(store)["segments"]) == 1
        merged = {w: rank(store, w, config=CONFIG, limit=1000) for w in WORDS}
        run_cli(tmp_path / "random.db", "index", "--rebuild")
        rebuilt = {w: rank(store, w, config=CONFIG, limit=1000) for w in WORDS}
        assert merged == rebuilt
    finally:
        store.close()


def test_the_floor_from_the_rarest_concept_changes_no_top_k(scratch: Store) -> None:
    """``Reader.top`` searches for the best only above the k-th best score of the rarest concept's
    items: a floor, so the top k must be exactly the one found among every item that scored."""
    from tidings.search.colloquial import with_colloquial
    from tidings.search.index import compound_set
    from tidings.search.query import compile_query
    from tidings.search.rank import concept_scores

    assert ids_for(scratch, "Mixtral 路由")
    hinted = 0
    with connect(scratch) as conn:
        reader = current_engine(conn, CONFIG).reader
        for query in [*QUERIES, "模型 推理 训练 数据", "的 是 在 了", "agent 工具 调用 大模型"]:
            groups = compile_query(query, with_colloquial(CONFIG)).groups
            for limit in (1, 10, 50):
                scores, likely = concept_scores(reader, groups, compounds=compound_set(CONFIG))
                with_floor = reader.top(scores.copy(), limit, likely=likely)
                assert with_floor == reader.top(scores.copy(), limit), (query, limit)
                hinted += likely is not None and len(likely) >= limit + 8
    assert hinted >= 5  # the floor was in play
