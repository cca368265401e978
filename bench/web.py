"""Benchmark: the week view and the static site over the 87 shared digests plus synthetic items.

The store holds every shared digest (imported with ``--format digest``) and N synthetic articles
(default 10,000), about 100 seen per week over the weeks after the last digest, so those weeks
are drafts with a realistic candidate list. The week view is timed through the app in-process
(routing, store, rendering; no network), over imported and draft weeks alike; the site is built
from scratch, then rebuilt unchanged. The last line printed is JSON.

The list mode (triage by keyboard, issue 17.3) is timed on one more week holding
``--list-candidates`` (default 1,000) candidates from 60 domains and 40 authors, after a
verdict on 40 % of the draft weeks' entries, so the triage model has keeps and drops to learn.

    python bench/web.py              # 10,000 synthetic items, 40 week views
    python bench/web.py --items 2000 --views 20
    python bench/web.py --items 2000 --views 0 --skip-site   # the list mode only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from tidings import collect, curate
from tidings.config import Config
from tidings.publish.site import build_site
from tidings.store import Digest, Item, ItemUrl, open_store
from tidings.web import create_app

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
LINK = re.compile(r"^\[《?(?P<title>[^\]]+?)》?\]\((?P<url>[^)\s]+)\)[。 ]+(?P<summary>.{40,})$", re.M)
PER_WEEK = 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def snippets() -> list[tuple[str, str]]:
    found = []
    for path in sorted((CORPUS / "digests").rglob("index.md")):
        found += [(m["title"], m["summary"]) for m in LINK.finditer(path.read_text(encoding="utf-8"))]
    return found


def add_synthetic(store, config: Config, count: int, first_week: date, seed: int = 7) -> list[date]:  # type: ignore[no-untyped-def]
    """``count`` extracted, summarized, classified articles, ``PER_WEEK`` seen in each week."""
    rng = random.Random(seed)
    texts = snippets()
    sections = config.section_names
    weeks = [first_week + timedelta(days=7 * i) for i in range((count + PER_WEEK - 1) // PER_WEEK)]
    with store.session() as session:
        for number in range(count):
            week = weeks[number // PER_WEEK]
            title, summary = rng.choice(texts)
            seen = datetime.combine(week - timedelta(days=rng.randint(0, 6)), dtime(12), UTC)
            url = f"https://bench.example/{number}"
            item = Item(url=url, kind="article", title=f"{title} #{number}", summary=summary,
                        summary_origin="extractive", section=rng.choice(sections), section_origin="keywords",
                        section_confidence=0.5, status="extracted", text=summary * 3, seen_at=seen, extra={})
            item.urls.append(ItemUrl(url=url))
            session.add(item)
            if number % 2000 == 1999:
                session.flush()
    return weeks


def add_list_week(store, config: Config, week: date, count: int, seed: int = 13) -> None:  # type: ignore[no-untyped-def]
    """``count`` candidates seen in ``week``, spread over 60 domains and 40 authors."""
    rng = random.Random(seed)
    texts = snippets()
    with store.session() as session:
        for number in range(count):
            title, summary = rng.choice(texts)
            url = f"https://site{rng.randrange(60)}.example/list/{number}"
            seen = datetime.combine(week - timedelta(days=rng.randint(0, 6)), dtime(12), UTC)
            item = Item(url=url, kind="article", title=f"{title} ·{number}", summary=summary, author=f"author {rng.randrange(40)}",
                        summary_origin="extractive", section=rng.choice(config.section_names), section_origin="model",
                        section_confidence=round(rng.uniform(0.3, 0.95), 2), status="extracted", text=summary,
                        seen_at=seen, published_at=seen, extra={})
            item.urls.append(ItemUrl(url=url))
            session.add(item)


def judge_drafts(store, weeks: list[date], seed: int = 17) -> int:  # type: ignore[no-untyped-def]
    """A keep or drop on 40 % of the draft weeks' entries, as a curator's week view leaves them."""
    rng = random.Random(seed)
    judged = 0
    with store.session() as session:
        for digest in session.scalars(select(Digest).where(Digest.week.in_(weeks))):
            for entry in digest.entries:
                if rng.random() < 0.4:
                    curate.set_kept(session, entry, rng.random() < 0.5)
                    judged += 1
    return judged


def time_list_mode(client: TestClient, week: date, views: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each view. The CPU time is the whole process's (the test
    client serves the request in its own threads): on a machine others load too, it is the figure
    that does not count waiting for a core."""
    url = f"/week?week={week.isoformat()}&view=list&new=0"
    first = client.get(url)  # untimed: files the candidates as the draft's entries
    assert first.status_code == 200 and first.text.count('class="row') >= 1000, "the list lost candidates"
    timings, cpu = [], []
    for _ in range(views):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200
    return timings, cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000, help="synthetic items (default 10,000)")
    parser.add_argument("--views", type=int, default=40, help="timed week views (default 40)")
    parser.add_argument("--list-candidates", type=int, default=1000, help="candidates of the list-mode week")
    parser.add_argument("--list-views", type=int, default=40, help="timed list-mode views (default 40)")
    parser.add_argument("--skip-site", action="store_true", help="do not build the static site")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tidings-bench-web-"))
    store = open_store(work / "bench.db")
    config = Config()
    started = time.perf_counter()
    report, _ = collect.import_paths(store, [str(CORPUS / "digests")], "digest", config)
    log(f"imported {report.done} digests in {time.perf_counter() - started:.1f}s")
    with store.session() as session:
        last = max(session.scalars(select(Digest.week)))
        imported = sorted(session.scalars(select(Digest.week)))
    started = time.perf_counter()
    drafts = add_synthetic(store, config, args.items, last + timedelta(days=7))
    log(f"added {args.items} synthetic items over {len(drafts)} draft weeks in {time.perf_counter() - started:.1f}s")

    client = TestClient(create_app(store, config), base_url="http://127.0.0.1:8000")
    rng = random.Random(11)
    # Half imported weeks, half draft weeks; every week is viewed once untimed first, as a
    # curator opening it would (a draft's first view files its candidates as entries).
    weeks = [rng.choice(imported) if i % 2 == 0 else rng.choice(drafts) for i in range(args.views)]
    for week in set(weeks):
        assert client.get(f"/week?week={week.isoformat()}").status_code == 200
    timings = []
    for week in weeks:
        started = time.perf_counter()
        response = client.get(f"/week?week={week.isoformat()}")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    if timings:
        log(f"week view: {len(timings)} views, p50 {statistics.median(timings):.1f} ms, "
            f"p95 {percentile(timings, 0.95):.1f} ms, max {max(timings):.1f} ms")
    else:
        timings = [0.0]

    for week in drafts:  # every draft week opened once, so its candidates are entries to judge
        client.get(f"/week?week={week.isoformat()}")
    judged = judge_drafts(store, drafts)
    list_week = drafts[-1] + timedelta(days=7)
    add_list_week(store, config, list_week, args.list_candidates)
    list_timings, list_cpu = time_list_mode(client, list_week, args.list_views)
    log(f"list mode: {args.list_candidates} candidates, {judged} verdicts to learn from, {len(list_timings)} views, "
        f"p50 {statistics.median(list_timings):.1f} ms, p95 {percentile(list_timings, 0.95):.1f} ms, "
        f"max {max(list_timings):.1f} ms (target p95 < 300 ms); CPU p50 {statistics.median(list_cpu):.1f} ms, "
        f"p95 {percentile(list_cpu, 0.95):.1f} ms; load average {os.getloadavg()[0]:.2f}")

    figures: dict[str, object] = {
        "digests": report.done,
        "synthetic_items": args.items,
        "week_views": len(timings),
        "week_view_p50_ms": round(statistics.median(timings), 1),
        "week_view_p95_ms": round(percentile(timings, 0.95), 1),
        "list_candidates": args.list_candidates,
        "list_verdicts": judged,
        "list_view_p50_ms": round(statistics.median(list_timings), 1),
        "list_view_p95_ms": round(percentile(list_timings, 0.95), 1),
        "list_view_cpu_p50_ms": round(statistics.median(list_cpu), 1),
        "list_view_cpu_p95_ms": round(percentile(list_cpu, 0.95), 1),
    }
    if not args.skip_site:
        site = work / "site"
        started = time.perf_counter()
        built = build_site(store, config, site)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        again = build_site(store, config, site)
        rebuild_s = time.perf_counter() - started
        assert again.written == 0, "an unchanged rebuild rewrote files"
        log(f"site: {built.pages} pages, {built.feeds} feeds, built in {build_s:.2f}s; "
            f"unchanged rebuild {rebuild_s:.2f}s ({again.written} written)")
        figures.update(site_pages=built.pages, site_build_s=round(build_s, 2),
                       site_rebuild_unchanged_s=round(rebuild_s, 2))
    store.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
