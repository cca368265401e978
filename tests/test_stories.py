"""Stories (issue 17.1) on the real store with the shared corpus: posts about one article grouped,
"seen in N sources", the best item, the curator's split / merge / choice recorded and kept by later
runs, one digest entry per story with an optional 另见 line that compiles as MDX, and the eval."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply, Request
from sqlalchemy import select
from test_mdx import HAVE_MDX, compile_text

from tidings import curate, pipeline
from tidings.cli import run_cli
from tidings.collect import add_urls, import_paths, poll_feeds, subscribe
from tidings.config import Config
from tidings.errors import UsageError
from tidings.publish.docusaurus import render_docusaurus
from tidings.sources.urlcheck import FetchPolicy
from tidings.stages import stories
from tidings.store import Item, Story, StoryEvent, open_store

MIXTRAL = ["post:607df83b079a5b7d", "post:684993764f8e7bb9", "post:b40932277cb609f5"]  # xiaohuggg, dotey, karpathy
GEMINI_API = ["post:34cea4e43861a118", "post:524d08b728f3bf92"]  # dotey, xiaohuggg: the same blog.google post
GEMINI_LAUNCH = ["post:de6049f10befac08", "post:2075ed99e64ab075"]  # the same event, no shared link
PAPER_SITES = ["post:fcf79df852be403a", "post:7b8840eea2b38ba4"]  # both mention paperswithcode.com's home page
ROUNDUP, MLX = "post:200ef6a2ecdb8b43", "post:5d41049d02153481"  # a list of 8 links vs one of them
REPO = Path(__file__).resolve().parents[1]


def ids_of(store, urls: list[str]) -> list[int]:  # noqa: ANN001
    with store.session() as session:
        found = dict(session.execute(select(Item.url, Item.id).where(Item.url.in_(urls))).all())
    return [found[url] for url in urls]


def story_id(store, url: str) -> int | None:  # noqa: ANN001
    view = stories.story_of(store, ids_of(store, [url])[0])
    return view.id if view else None


@pytest.fixture
def social(corpus_dir: Path, tmp_path: Path):  # noqa: ANN201
    """A store holding the 154 real social posts, no story assigned yet."""
    store = open_store(tmp_path / "social.db")
    import_paths(store, [str(corpus_dir / "social")], "auto", Config(workers=1))
    yield store
    store.close()


@pytest.fixture(scope="module")
def corpus_db(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared corpus as a user imports it (digests, posts, notes, the saved pages read from disk),
    run through fetch, dedupe and stories once. Tests copy it before changing it."""
    path = tmp_path_factory.mktemp("stories") / "corpus.db"
    store = open_store(path)
    config = Config(workers=1)
    import_paths(store, [str(corpus_dir / name) for name in ("digests", "social", "notes")], "auto", config)
    pages = add_urls(store, [str(p) for p in sorted((corpus_dir / "html").glob("*.html"))]).item_ids
    # Only the pages are fetched (from disk): the digests' links would need the network.
    pipeline.run(store, config, stages=["fetch"], item_ids=pages, policy=FetchPolicy(allow_files=True))
    pipeline.run(store, config, stages=["dedupe", "stories"])
    store.close()
    return path


def test_posts_about_one_article_are_one_story_and_roundups_are_not(social) -> None:  # noqa: ANN001
    report = pipeline.run(social, Config(workers=1), stages=["stories"])[0]
    assert report.stage == "stories" and report.done == 154 and report.failed == 0

    assert len({story_id(social, url) for url in MIXTRAL}) == 1
    assert len({story_id(social, url) for url in GEMINI_API}) == 1
    assert story_id(social, PAPER_SITES[0]) != story_id(social, PAPER_SITES[1])  # a home page names no story
    assert story_id(social, ROUNDUP) != story_id(social, MLX)  # a roundup is not each of its links
    # Offline, two posts on one event with no shared link or text stay apart (a model would be needed).
    assert story_id(social, GEMINI_LAUNCH[0]) != story_id(social, GEMINI_LAUNCH[1])

    mixtral = stories.story_of(social, ids_of(social, MIXTRAL)[0])
    assert mixtral is not None and mixtral.sources_count == 3  # xiaohuggg, dotey, karpathy
    sizes = stories.story_sizes(social, ids_of(social, [*MIXTRAL, PAPER_SITES[0]]))
    assert list(sizes.values()) == [3, 3, 3, 1]
    with social.session() as session:
        # The best item is the longest text.
        members = session.scalars(select(Item).where(Item.story_id == mixtral.id)).all()
        longest = max(members, key=lambda item: len(item.text or ""))
        assert mixtral.best_item_id == longest.id and mixtral.chosen_by == "auto"
        joins = session.scalars(select(StoryEvent).where(StoryEvent.story_id == mixtral.id)).all()
        assert {e.action for e in joins} == {"join"} and all(e.by == "auto" for e in joins)
        assert {e.detail["signal"] for e in joins} == {"shared link"}

    again = pipeline.run(social, Config(workers=1), stages=["stories"])[0]
    assert (again.done, again.new, again.updated) == (0, 0, 0)


def test_split_merge_and_choice_are_recorded_and_later_runs_keep_them(social) -> None:  # noqa: ANN001
    config = Config(workers=1)
    mixtral = ids_of(social, MIXTRAL)
    with social.session() as session:
        every = session.scalars(select(Item.id)).all()
    # Two of the three Mixtral posts arrive first; the third comes in a later run.
    pipeline.run(social, config, stages=["stories"], item_ids=[i for i in every if i != mixtral[2]])
    first = stories.story_of(social, mixtral[0])
    assert first is not None and first.item_ids == sorted(mixtral[:2])

    apart = stories.split(social, mixtral[1], by="garfield")
    assert stories.story_of(social, mixtral[1]).id == apart != first.id
    pipeline.run(social, config, stages=["stories"])  # the third post joins one story, the split stands
    after = [stories.story_of(social, item_id) for item_id in mixtral]
    assert after[0].id != after[1].id and after[1].id == apart
    assert after[2].id in (after[0].id, after[1].id)

    launch = ids_of(social, GEMINI_LAUNCH)
    kept = stories.merge(social, stories.story_of(social, launch[0]).id, stories.story_of(social, launch[1]).id)
    assert stories.story_of(social, launch[1]).id == kept
    stories.choose_best(social, kept, launch[1])
    pipeline.run(social, config, stages=["stories"])
    merged = stories.story_of(social, launch[0])
    assert merged.item_ids == sorted(launch) and merged.best_item_id == launch[1] and merged.chosen_by == "curator"
    assert merged.pinned and merged.sources_count == 1  # both are dotey's

    actions = [(e["action"], e["by"]) for e in stories.story_events(social, apart)]
    assert ("split", "garfield") in actions
    assert [e["action"] for e in stories.story_events(social, kept)] == ["merge", "choose"]

    with pytest.raises(UsageError, match="alone"):
        stories.split(social, mixtral[1])
    with pytest.raises(UsageError, match="not in story"):
        stories.choose_best(social, kept, mixtral[0])
    with pytest.raises(UsageError, match="itself"):
        stories.merge(social, kept, kept)


def _pages(corpus_dir: Path) -> dict[str, bytes]:
    # The same mdnice article as juejin and zhihu published it (near-duplicate text, two pages).
    html = corpus_dir / "html"
    return {
        "/juejin/post": (html / "juejin_fragment_article-content_mdnice.html").read_bytes(),
        "/zhihu/p": (html / "zhihu_fragment_post-richtext_mdnice.html").read_bytes(),
        "/other": (html / "golang-blog_godoc-documenting-go-code.html").read_bytes(),
    }


def page_route(body: bytes) -> Callable[[Request], Reply]:
    return lambda _request: Reply(200, body, {"Content-Type": "text/html; charset=utf-8"})


def test_a_story_is_one_digest_entry_with_an_optional_see_also_line(corpus_dir: Path, tmp_path: Path) -> None:
    pages = _pages(corpus_dir)
    routes = {path: page_route(body) for path, body in pages.items()}
    store = open_store(tmp_path / "week.db")
    with LoopbackServer(routes) as srv:
        urls = [srv.url(path) for path in pages]
        add_urls(store, urls)
        policy = FetchPolicy(allow_hosts=(srv.host_port,), retries=1, backoff_base=0.001)
        pipeline.run(store, Config(workers=1), stages=["fetch"], policy=policy)
    # Dedupe folds texts from 0.8 alike; here it is asked to fold only near-identical ones (0.98), so the two
    # pages stay items of their own and only the story joins them.
    pipeline.dedupe_items(store, threshold=0.98)
    pipeline.run(store, Config(workers=1), stages=["stories"])
    juejin, zhihu, other = ids_of(store, urls)
    story = stories.story_of(store, juejin)
    assert story is not None and story.item_ids == [juejin, zhihu]
    assert stories.story_of(store, other).item_ids == [other]

    today = date.today()
    week = today + timedelta(days=(6 - today.weekday()) % 7)
    plain = Config(workers=1)
    digest = curate.assemble_week(store, week, plain)
    with store.session() as session:
        shown = [e.item_id for e in session.get(type(digest), digest.id).entries]
    assert sorted(shown) == sorted([story.best_item_id, other])

    without = render_docusaurus(curate.load_doc(store, week, plain))
    assert "另见" not in without
    with_line = render_docusaurus(curate.load_doc(store, week, Config(workers=1, publish={"see_also": True})))
    other_url = srv.url("/zhihu/p") if story.best_item_id == juejin else srv.url("/juejin/post")
    assert f"另见：[{srv.host_port}]({other_url})" in with_line
    assert with_line.count("另见") == 1  # the lone article has no other source
    if HAVE_MDX:
        report = compile_text(tmp_path, with_line)
        assert report["ok"], report["error"]
        assert report["jsx"] == [] and report["expressions"] == [] and report["html"] == []
        assert other_url in report["links"]
    store.close()


def test_eval_reports_heldout_precision_on_the_labelled_pairs(corpus_db: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "eval.db"
    shutil.copy(corpus_db, db)
    code = run_cli(["--db", str(db), "eval", "stories", "--pairs", str(REPO / "evals" / "stories.jsonl"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unresolved"] == []
    heldout = report["heldout"]
    assert heldout["pairs"] >= 70 and report["calibration"]["pairs"] >= 70
    assert heldout["precision"] >= 0.95, heldout["wrong"]
    assert heldout["recall"] is not None and heldout["recall"] > 0.5, heldout["wrong"]


def test_the_corpus_run_gave_every_item_a_story_and_a_rerun_changes_nothing(corpus_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "rerun.db"
    shutil.copy(corpus_db, db)
    store = open_store(db)
    with store.session() as session:
        before = session.execute(select(Item.id, Item.story_id).order_by(Item.id)).all()
        stories_before = session.scalar(select(Story.id).order_by(Story.id.desc()).limit(1))
        unplaced = session.scalars(
            select(Item.id).where(Item.story_id.is_(None), Item.status.not_in(["rejected", "error"]))
        ).all()
    assert unplaced == []
    report = pipeline.run(store, Config(workers=1), stages=["stories"])[0]
    assert report.done == 0
    with store.session() as session:
        assert session.execute(select(Item.id, Item.story_id).order_by(Item.id)).all() == before
        assert session.scalar(select(Story.id).order_by(Story.id.desc()).limit(1)) == stories_before
    store.close()


@pytest.mark.parametrize("line, message", [
    ("not json", "not a labelled pair"),
    ('{"id": "x", "split": "test", "same": true, "a": {"url": "u"}, "b": {"url": "v"}}', "split must be"),
    ('{"id": "x", "split": "heldout", "a": {"url": "u"}}', "not a labelled pair"),
])
def test_a_bad_pair_file_is_a_clear_error(tmp_path: Path, line: str, message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(line + "\n", encoding="utf-8")
    code = run_cli(["--db", str(tmp_path / "t.db"), "eval", "stories", "--pairs", str(pairs)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_same_entry_in_two_feeds_is_seen_in_two_sources(corpus_dir: Path, tmp_path: Path) -> None:
    body = (corpus_dir / "feeds" / "hexo_tiann_weishu_atom.xml").read_bytes()
    route = page_route(body)
    store = open_store(tmp_path / "feeds.db")
    with LoopbackServer({"/atom.xml": route, "/mirror/atom.xml": route}) as srv:
        assert subscribe(store, srv.url("/atom.xml")) and subscribe(store, srv.url("/mirror/atom.xml"))
        policy = FetchPolicy(allow_hosts=(srv.host_port,), retries=1, backoff_base=0.001)
        polled = poll_feeds(store, policy)
    assert polled.failed == 0
    pipeline.run(store, Config(workers=1), stages=["dedupe", "stories"])
    with store.session() as session:
        entries = session.scalars(select(Item.id).where(Item.story_id.is_not(None))).all()
    assert len(entries) == 20  # the feed's 20 entries, each one item
    assert set(stories.story_sizes(store, entries).values()) == {2}
    store.close()


def test_the_cli_shows_splits_and_merges_stories(social, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    pipeline.run(social, Config(workers=1), stages=["stories"])
    db = str(social.engine.url.database)
    first, second, _third = ids_of(social, MIXTRAL)
    assert run_cli(["--db", db, "stories", "show", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "3 item(s), seen in 3 source(s)" in shown and "Mixtral AI 公布 MoE 8x7B" in shown
    assert run_cli(["--db", db, "stories", "split", str(first)]) == 0
    alone = stories.story_of(social, first)
    assert alone.item_ids == [first]
    assert run_cli(["--db", db, "stories", "split", str(first)]) == 2  # alone already: a clear refusal
    assert "nothing to split" in capsys.readouterr().err
    assert run_cli(["--db", db, "stories", "merge", str(alone.id), str(stories.story_of(social, second).id)]) == 0
    assert stories.story_of(social, first).item_ids == sorted(ids_of(social, MIXTRAL))
    assert run_cli(["--db", db, "stories", "best", str(alone.id), str(second)]) == 0
    assert stories.story_of(social, first).best_item_id == second
    assert run_cli(["--db", db, "stories", "show", "999999"]) == 2
