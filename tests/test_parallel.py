"""The CPU stages in worker processes: the pool gives what the calling process gives, on the real
saved pages, and a pooled run killed with SIGKILL resumes without losing or duplicating an item."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply
from sqlalchemy import select
from test_pipeline import kill_once_committed, start_fetch

from tidings import pipeline
from tidings.config import Config
from tidings.records import ItemRecord
from tidings.sources.urlcheck import FetchPolicy
from tidings.stages import work as stagework
from tidings.stages.classify import Doc, KeywordClassifier
from tidings.store import Item, open_store

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FIELDS = (
    "url", "status", "title", "author", "language", "text", "content_hash", "fingerprint", "summary",
    "summary_origin", "section", "section_confidence", "error_reason", "error", "duplicate_of_id",
)


def _pages_routes(corpus_dir: Path) -> dict[str, object]:
    def serve(body: bytes) -> object:
        return lambda _r: Reply(200, body, {"Content-Type": "text/html"})

    pages = sorted((corpus_dir / "html").glob("*.html"))
    assert len(pages) >= stagework.MIN_POOL_ITEMS  # enough work for the pool to be used at all
    return {f"/{page.stem}": serve(page.read_bytes()) for page in pages}


def _advance(db: Path, urls: list[str], policy: FetchPolicy, workers: int) -> list[dict[str, object]]:
    """Every stage on ``urls`` with ``workers`` processes; the items' fields by id."""
    store = open_store(db)
    pipeline.ingest(store, [ItemRecord(url=url) for url in urls], source_kind="links", locator="test")
    config = Config(workers=workers)
    pipeline.fetch_and_extract(store, policy, workers=workers)
    pipeline.dedupe_items(store, workers=workers)
    pipeline.summarize_items(store, config)
    pipeline.classify_items(store, config)
    with store.session() as session:
        return [{name: getattr(i, name) for name in FIELDS} for i in session.scalars(select(Item).order_by(Item.id))]


def test_the_pool_gives_what_the_calling_process_gives(
    tmp_path: Path, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[tuple[int | None, bool]] = []  # (workers, got a pool) for every stage that asked
    real_pool_for = stagework.pool_for

    def recording(workers: int | None, items: int) -> object:
        pool = real_pool_for(workers, items)
        used.append((workers, pool is not None))
        return pool

    monkeypatch.setattr(stagework, "pool_for", recording)
    with LoopbackServer(_pages_routes(corpus_dir)) as server:
        urls = sorted(server.url(path) for path in server.routes)
        policy = FetchPolicy(allow_hosts=(server.host_port,), retries=0)
        alone = _advance(tmp_path / "alone.db", urls, policy, workers=1)
        pooled = _advance(tmp_path / "pooled.db", urls, policy, workers=2)
    assert stagework.get_pool(2) is not None  # the pooled run had a pool to run in
    # ... and really ran in it: extraction and summaries (the stages with >= MIN_POOL_ITEMS items)
    # went to the pool with workers=2, and never with workers=1.
    assert not any(got for workers, got in used if workers == 1)
    assert sum(got for workers, got in used if workers == 2) >= 2
    assert pooled == alone
    # and the run did real work: articles extracted, fingerprinted, summarized, filed; others set aside
    extracted = [i for i in alone if i["status"] == "extracted"]
    assert len(extracted) >= 20
    assert [i["url"] for i in extracted if not (i["summary"] and i["section"])] == []
    assert len([i for i in extracted if i["fingerprint"]]) >= 20
    assert any(i["status"] == "rejected" and i["error_reason"] == "no_article" for i in alone)
    # the code-only page is set aside for having no prose (issue 13.3), not summarized as markup
    [code_only] = [i for i in alone if str(i["url"]).endswith("/cnblogs_post_xu-tao-week13")]
    assert code_only["status"] == "rejected" and "no prose" in str(code_only["error"]) and not code_only["summary"]


def test_classifying_over_the_pool_keeps_order_and_results(corpus_dir: Path) -> None:
    from tidings.stages import extract

    texts = []
    for page in sorted((corpus_dir / "html").glob("*.html")):
        try:
            found = extract.extract(page.read_bytes(), url=f"https://corpus.example/{page.name}")
        except extract.ExtractError:
            continue
        texts.append(Doc(found.title, None, found.text, f"https://corpus.example/{page.name}"))
    docs = (texts * 4)[: pipeline.CLASSIFY_SPLIT + 7]
    config = Config()
    classifier = KeywordClassifier(config.sections, config.fallback_section)
    here = stagework.classify_docs(classifier, docs)
    assert pipeline._predict(classifier, docs, stagework.get_pool(2)) == here


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (the fork server and the workers it forked)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
def test_a_killed_pooled_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    page = (EXAMPLES / "pages" / "go-iterators.html").read_bytes()

    def slow_page(_r: object) -> Reply:
        time.sleep(0.3)
        return Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})

    with LoopbackServer({"*": slow_page}) as server:
        proc, base, env = start_fetch(tmp_path, server, 32, "workers = 2\n")
        workers: set[int] = set()
        # Killed once pages are committed, not once some were served: the pool may take a while to
        # start, and a kill before the first commit would leave the re-run everything to fetch again.
        kill_once_committed(proc, tmp_path / "t.db", 3, watch=lambda: workers.update(_children(proc.pid)))
        served_before = {r.path for r in server.requests}
        assert 0 < len(served_before) < 32
        assert workers, "the fetch ran without a worker pool"
        # The workers notice their parent is gone and end: nothing is left running after a kill.
        deadline = time.time() + 30
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
        for command in (["fetch"], ["dedupe"], ["summarize"]):
            done = subprocess.run([*base, *command], env=env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        listed = subprocess.run([*base, "items", "--json"], env=env, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    # 32 links of one page: the first is kept, the other 31 are merged into it as near-duplicates,
    # each URL kept exactly once; nothing lost, nothing stored twice.
    urls = [u for r in rows for u in r["urls"]]
    assert len(urls) == 32 and len(set(urls)) == 32
    kept = [r for r in rows if r["status"] == "extracted"]
    assert len(kept) == 1 and kept[0]["summary"]
    assert all(r["status"] in ("extracted", "duplicate") for r in rows)
    # the re-run fetched only what the killed run had not finished
    assert len(server.requests) < 32 + len(served_before)


def test_pages_sent_in_batches_come_back_one_by_one(corpus_dir: Path) -> None:
    """While the workers are busy, pages go out several to a task: every page still comes back once,
    under its own key, with what extracting it in this process gives; and an error raised by a job
    ends the stream at that job, after the results of the jobs before it in its batch."""
    pages = [page.read_bytes() for page in sorted((corpus_dir / "html").glob("*.html"))]
    jobs = [(n, (page, None, f"https://corpus.example/{n}")) for n, page in enumerate(pages * 3)]
    pool = stagework.get_pool(2)
    assert pool is not None
    alone = dict(stagework.run_jobs(stagework.extract_page, jobs, None))
    pooled = list(stagework.run_jobs(stagework.extract_page, jobs, pool))
    assert sorted(key for key, _ in pooled) == sorted(alone)  # each page once
    assert dict(pooled) == alone

    broken = [*jobs[:40], ("broken", (12345, None, "https://corpus.example/broken")), *jobs[40:]]
    seen: list[object] = []
    with pytest.raises(AttributeError):  # an int is no page: extract() fails outside its own errors
        for key, _ in stagework.run_jobs(stagework.extract_page, broken, pool):
            seen.append(key)
    assert "broken" not in seen and len(seen) == len(set(seen))
