"""tidings: collect, extract, de-duplicate, summarize, classify and publish tech reading.

The public library API. The ``tidings`` command is a thin layer over these functions; a script
can do what a command does with them::

    import tidings
    store = tidings.open_store("tidings.db")
    config = tidings.load_config()
    tidings.add_urls(store, ["https://go.dev/blog/go1.22"])
    tidings.run(store, config)
    print(tidings.render_week(store, date(2024, 6, 9), config))

``import tidings`` is cheap: each function imports its module when first called, and the types
(:class:`Store`, :class:`Config`, ...) are loaded on first access (PEP 562 ``__getattr__``), so
``tidings --help`` never pays for SQLAlchemy, numpy or the HTTP client. Everything else in the
package is internal and may change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .collect import FileOutcome
    from .config import Config
    from .llm.gateway import LLM
    from .pipeline import StageReport
    from .publish.site import SiteReport
    from .records import DigestDoc, ItemRecord
    from .search.archive import ArchiveAnswer
    from .search.ask import Answer
    from .search.hits import SearchResult
    from .search.query import Filters
    from .sources.urlcheck import FetchPolicy
    from .stages.classify import Classifier
    from .store import Store

__version__ = "0.1.0"

__all__ = [
    "Config",
    "DigestDoc",
    "FetchPolicy",
    "Filters",
    "ItemStatus",
    "StageReport",
    "Store",
    "TidingsError",
    "add_urls",
    "ask",
    "build_site",
    "import_paths",
    "ingest",
    "load_config",
    "open_store",
    "preview_week",
    "render_week",
    "run",
    "search_archive",
]

# Types, loaded on first access: ``tidings.Store`` imports SQLAlchemy only when asked for.
_LAZY_TYPES = {
    "Config": "tidings.config",
    "DigestDoc": "tidings.records",
    "FetchPolicy": "tidings.sources.http",
    "Filters": "tidings.search.query",
    "ItemStatus": "tidings.store",
    "StageReport": "tidings.pipeline",
    "Store": "tidings.store",
    "TidingsError": "tidings.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_TYPES.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# --- the store and the configuration ---------------------------------------------------------


def open_store(path: str | Path) -> Store:
    """Open (and create or migrate, when needed) the SQLite store at ``path``.

    Example::

        store = tidings.open_store("tidings.db")
        with store.session() as session: ...
    """
    from .store import open_store as _open_store

    return _open_store(path)


def load_config(path: str | Path | None = None) -> Config:
    """Load the configuration from ``path``; without one, ``./tidings.toml`` when it exists, else
    the built-in defaults. A bad file raises :class:`tidings.errors.ConfigError`.

    Example::

        config = tidings.load_config("tidings.toml")
        config.week_ends_on  # 'sunday'
    """
    from .config import load_config as _load_config

    return _load_config(Path(path) if path is not None else None)


# --- getting items in --------------------------------------------------------------------------


def add_urls(store: Store, targets: Iterable[str]) -> StageReport:
    """Queue http(s) URLs or local HTML files (paths or ``file:`` URLs) as items to fetch; the
    next :func:`run` fetches and extracts them. Check untrusted input with
    ``tidings.collect.url_refusal`` first, as ``tidings add`` does.

    Example::

        report = tidings.add_urls(store, ["https://go.dev/blog/go1.22", "saved/page.html"])
        report.new  # 2
    """
    from .collect import add_urls as _add_urls

    return _add_urls(store, list(targets))


def import_paths(
    store: Store,
    paths: list[str],
    config: Config,
    *,
    fmt: str = "auto",
    week: date | None = None,
    follow_links: bool = False,
    on_file: Callable[[int, int, str], None] | None = None,
) -> tuple[StageReport, list[FileOutcome]]:
    """Import files or directories (recursed; ``-`` is stdin): link lists, past digests, social
    posts, notes, blog posts, feed files or OPML. ``fmt="auto"`` detects each file's format.
    Returns the report and one outcome per file (its format, or why it was skipped).

    Example::

        report, files = tidings.import_paths(store, ["week.txt"], config, fmt="links")
        report.new, [f.format for f in files]  # (12, ['links'])
    """
    from .collect import import_paths as _import_paths

    options: dict[str, Any] = {"week": week, "follow_links": follow_links}
    if on_file is not None:
        options["on_file"] = on_file
    return _import_paths(store, paths, fmt, config, **options)


def ingest(store: Store, records: Iterable[ItemRecord], *, source_kind: str, locator: str) -> StageReport:
    """Store parsed records (:class:`tidings.records.ItemRecord`) as items, merging with the items
    already known by URL or GUID; ``source_kind`` and ``locator`` name where they came from.

    Example::

        from tidings.records import ItemRecord
        tidings.ingest(store, [ItemRecord(url="https://example.org/post")],
                       source_kind="script", locator="my-script")
    """
    from .pipeline import ingest as _ingest

    return _ingest(store, records, source_kind=source_kind, locator=locator)


# --- the one stage loop --------------------------------------------------------------------


def run(
    store: Store,
    config: Config,
    *,
    stages: Iterable[str] | None = None,
    item_ids: Iterable[int] | None = None,
    force: bool = False,
    policy: FetchPolicy | None = None,
    llms: dict[str, Any] | None = None,
    classifier: Classifier | None = None,
    progress: Callable[[str], AbstractContextManager[Callable[[int, int, str], None]]] | None = None,
) -> list[StageReport]:
    """Advance items through the stages (fetch, dedupe, summarize, classify; all by default):
    :func:`tidings.pipeline.run`, the one loop every command and the web UI drive. Each stage
    picks the items that still need it (only ``item_ids`` when given) and commits per item or
    batch, so an interrupted run resumes where it stopped. ``force`` re-does work (fetch retries
    failed items). ``llms`` maps ``"summarize"``/``"classify"`` to a :class:`tidings.llm.gateway.LLM`;
    without one the offline methods run. ``progress(stage)`` gives a context manager yielding a
    ``(done, total, what)`` callback. Returns one report per stage.

    Example::

        reports = tidings.run(store, config)
        [(r.stage, r.done, r.failed) for r in reports]  # [('fetch', 2, 0), ('dedupe', 2, 0), ...]
        # one item again, recomputing its machine summary:
        tidings.run(store, config, stages=["summarize"], item_ids=[42], force=True)
    """
    from . import pipeline

    # Only what the caller gave is passed on: the defaults are pipeline.run's, written once.
    options: dict[str, Any] = {"item_ids": item_ids, "force": force, "policy": policy, "llms": llms,
                               "classifier": classifier}
    if stages is not None:
        options["stages"] = stages
    if progress is not None:
        options["progress"] = progress
    return pipeline.run(store, config, **options)


# --- digests -----------------------------------------------------------------------------------


def preview_week(store: Store, week: date, config: Config) -> DigestDoc | None:
    """The digest of the week ending on ``week``, as a document: the stored one, or the draft
    that would be made from the week's items. Read-only: nothing is written. None when the week
    has no digest and no items.

    Example::

        doc = tidings.preview_week(store, date(2024, 6, 9), config)
        doc.sections, len(doc.entries)  # (['AI', 'Go'], 14)
    """
    from .curate import preview_week as _preview_week

    return _preview_week(store, week, config)


def render_week(
    store: Store, week: date, config: Config, *, fmt: str = "docusaurus", save: bool = False
) -> str | None:
    """The week's digest rendered as ``fmt`` (docusaurus, hugo, jekyll, markdown or html).

    With ``save=False`` nothing is written (as ``tidings digest``), and None means the week has
    nothing yet. With ``save=True`` the week's draft is created or refreshed in the store first,
    as ``tidings run`` does, so it can then be edited in the web UI.

    Example::

        print(tidings.render_week(store, date(2024, 6, 9), config))
        # ---
        # slug: 2024-06-09
        # ...
    """
    from . import curate
    from .publish import formats

    render = formats.renderer(fmt)  # an unknown format fails before any work
    if save:
        curate.assemble_week(store, week, config)
        doc = curate.load_doc(store, week, config)
    else:
        doc = curate.preview_week(store, week, config)
    return None if doc is None else render(doc, config.digest.template_dir)


def build_site(
    store: Store, config: Config, out: str | Path, *, title: str = "tidings", base_url: str | None = None,
    include_drafts: bool = False,
) -> SiteReport:
    """Write the static site (digests, section and tag pages, feeds, search, sitemap) into
    ``out``. An unchanged rebuild rewrites no file.

    Example::

        report = tidings.build_site(store, config, "public", base_url="https://example.org/")
        report.digests, report.written
        # (52, 310)
    """
    from .publish.site import build_site as _build_site

    return _build_site(store, config, Path(out), title=title, base_url=base_url, include_drafts=include_drafts)


# --- search and ask --------------------------------------------------------------------------


def search_archive(
    store: Store, query: str, *, config: Config | None = None, filters: Filters | None = None, limit: int = 10,
    recent: bool = False, hybrid: bool = True,
) -> SearchResult:
    """Search the archive: BM25 over segmented text with field weights, fused with embeddings
    when ``hybrid`` and an embedding model is configured. The query takes words, "phrases",
    -exclusions and ``author:``/``tag:``/``section:``/``kind:``/``since:``/``until:``. (Not
    named ``search``: that is the name of the package ``tidings.search``, which would shadow it.)

    Example::

        result = tidings.search_archive(store, '向量数据库 since:2024-01', config=config, limit=5)
        [(hit.item.title, round(hit.score, 2)) for hit in result.hits]
        # [('Milvus 2.4 发布', 0.91), ...]
    """
    from .search.rank import search as _search

    return _search(store, query, config=config, filters=filters, limit=limit, recent=recent, hybrid=hybrid)


def ask(
    store: Store, question: str, *, config: Config | None = None, filters: Filters | None = None,
    threshold: float | None = None, hybrid: bool = True, llm: LLM | None = None,
) -> Answer | ArchiveAnswer:
    """Answer from the archive, citing only quotes that occur verbatim in the cited items; below
    the evidence ``threshold`` (calibrated by default) the answer is a refusal with related items.
    A question about the archive itself (a count, ranking or series: "2024 年每个月各有几期？")
    gets an :class:`tidings.search.archive.ArchiveAnswer` instead, from SQL over the read-only
    archive views (written by ``llm``'s ``ask`` route when given, else by templates).

    Example::

        answer = tidings.ask(store, "What did Karpathy say about tokenization?", config=config)
        answer.refused, [c.url for c in answer.evidence]
        # (False, ['https://karpathy.ai/...'])
    """
    from .search.archive import answer_archive
    from .search.ask import ask as _ask

    archive = answer_archive(store, question, config=config, llm=llm)
    if archive is not None:
        return archive
    answerer = None
    if llm is not None and config is not None and llm.available("ask"):
        from .search.answerer import llm_answerer

        answerer = llm_answerer(llm, config)  # passages fenced as data, reply validated (issue 16.4)
    return _ask(store, question, config=config, filters=filters, threshold=threshold, hybrid=hybrid, answerer=answerer)
