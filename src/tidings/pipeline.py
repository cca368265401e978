"""The run loop: records from sources go into the store, then each stage advances items.

Every stage selects the items that still need it and commits per item (classification, which is
cheap, per batch of :data:`CLASSIFY_BATCH`), so a killed run loses at most the work in flight and a
re-run resumes where it stopped.
Stages never repeat work on unchanged items: that is what makes every command idempotent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.orm import Session, selectinload

from .config import Config
from .errors import FetchError, UsageError
from .records import ItemRecord
from .stages import dedupe
from .stages.classify import Classifier, item_doc, section_classifier
from .store import (
    Digest,
    DigestEntryRow,
    Item,
    ItemLink,
    ItemSource,
    ItemStatus,
    ItemTag,
    ItemUrl,
    Source,
    Store,
)

if TYPE_CHECKING:
    # httpx (through the fetcher) loads only in commands that fetch: `digest` and `items` start faster.
    from .sources.urlcheck import FetchPolicy
    from .stages.work import Extraction

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: stages report through this and never import Rich."""


def _silent(_done: int, _total: int, _label: str) -> None:
    pass


@dataclass
class StageReport:
    stage: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    """Skipped items worth naming (e.g. a page with no article), shown but not failures."""

    def fail(self, what: str, reason: str) -> None:
        self.failed += 1
        self.failures.append((what, reason))


# --- ingest: records → items -------------------------------------------------------------


def identity_url(record: ItemRecord) -> str:
    return dedupe.canonicalize_url(record.url) if record.url else ""


def find_item(session: Session, record: ItemRecord, canonical: str) -> Item | None:
    item = session.scalar(select(Item).where(Item.url == canonical))
    if item is None and record.url:
        row = session.scalar(select(ItemUrl).where(ItemUrl.url == record.url))
        item = row.item if row else None
    if item is None and record.guid:
        item = session.scalar(select(Item).where(Item.guid == record.guid))
    while item is not None and item.duplicate_of_id is not None:
        item = session.get(Item, item.duplicate_of_id)
    return item


_COPIED = ("kind", "title", "author", "author_handle", "published_at", "language", "category", "note", "guid")


def upsert_record(session: Session, record: ItemRecord, source: Source | None) -> tuple[Item, str]:
    """Store one record; returns the item and ``new`` / ``updated`` / ``unchanged``.

    Fields already known are kept: a re-import never clobbers extraction results or user edits,
    and a human summary is never overwritten by a machine one."""
    canonical = identity_url(record)
    item = find_item(session, record, canonical)
    changed = False
    if item is None:
        item = Item(url=canonical, kind=record.kind, status=ItemStatus.PENDING, extra={})
        session.add(item)
        state = "new"
    else:
        state = "unchanged"
    for name in _COPIED:
        value = getattr(record, name)
        if value is not None and getattr(item, name) in (None, "") and value != getattr(item, name):
            setattr(item, name, value)
            changed = True
    if record.text and not item.text:
        item.text = record.text
        item.content_hash = dedupe.content_hash(record.text)
        item.status = ItemStatus.EXTRACTED
        changed = True
    if record.summary and (item.summary_origin != "human" or not item.summary):
        if item.summary != record.summary or item.summary_origin != (record.summary_origin or "human"):
            item.summary = record.summary
            item.summary_origin = record.summary_origin or "human"
            changed = True
    if record.section and not item.section:
        item.section, item.section_origin, item.section_confidence = record.section, "human", 1.0
        changed = True
    if record.extra:
        merged = {**record.extra, **(item.extra or {})}
        if merged != item.extra:
            item.extra = merged
            changed = True
    session.flush()
    if record.url and record.url not in {u.url for u in item.urls}:
        if session.scalar(select(ItemUrl).where(ItemUrl.url == record.url)) is None:
            item.urls.append(ItemUrl(url=record.url))
            changed = True
    for tag in record.tags:
        if tag and tag not in item.tags:
            item.tag_rows.append(ItemTag(tag=tag))
            changed = True
    for link in record.links:
        if link and link not in item.links:
            item.link_rows.append(ItemLink(url=link))
            changed = True
    if source is not None:
        exists = session.scalar(
            select(ItemSource).where(ItemSource.item_id == item.id, ItemSource.source_id == source.id)
        )
        if exists is None:
            session.add(ItemSource(item_id=item.id, source_id=source.id))
    if changed and state == "unchanged":
        state = "updated"
    return item, state


def ingest(
    store: Store,
    records: Iterable[ItemRecord],
    *,
    source_kind: str,
    locator: str,
    report: StageReport | None = None,
    progress: Progress = _silent,
    total: int = 0,
) -> StageReport:
    from .store import get_or_create_source

    report = report or StageReport("import")
    for number, record in enumerate(records, start=1):
        with store.session() as session:
            source = get_or_create_source(session, source_kind, locator)
            item, state = upsert_record(session, record, source)
            report.item_ids.append(item.id)
        setattr(report, state, getattr(report, state) + 1)
        report.done += 1
        progress(number, total, record.url or "")
    return report


# --- fetch + extract -----------------------------------------------------------------------


def _fetchable(url: str) -> bool:
    """Whether ``url`` may be fetched without the user having named it: anything but the local
    disk (``file:`` URLs and bare paths). Other schemes are refused by the fetcher with a reason."""
    from .sources.urlcheck import is_local_reference  # imported here: this file's imports are shared ground

    return not is_local_reference(url)


def pending_fetch(session: Session, *, retry_failed: bool = False, item_ids: Iterable[int] | None = None) -> list[Item]:
    """Items still to fetch: new ones, and those whose last failure was transient (a re-run retries them).
    ``item_ids`` limits them in the query (a queue job's one item: not every pending item loaded).
    Their URLs come with them (:func:`fetch_url_of` reads them): a chunk of items per query, not one
    query per item, which was minutes for a large backlog."""
    retry = and_(Item.status == ItemStatus.ERROR, Item.error_transient.is_(True))
    if retry_failed:
        retry = Item.status == ItemStatus.ERROR
    query = select(Item).where(
        Item.duplicate_of_id.is_(None), Item.kind == "article", or_(Item.status == ItemStatus.PENDING, retry)
    )
    if item_ids is not None:
        query = query.where(Item.id.in_(list(item_ids)))
    return list(session.scalars(query.options(selectinload(Item.urls)).order_by(Item.id)))


def fetch_url_of(item: Item) -> str:
    """Fetch the first URL as the user gave it: canonicalization may drop what a server needs."""
    return item.urls[0].url if item.urls else item.url


def store_extraction(item: Item, found: Extraction) -> None:
    """Put a worker's :class:`~tidings.stages.work.Extraction` of an article on ``item``."""
    if not item.title and found.title:
        item.title = found.title
        if found.title_derived:
            # The page names no title: this one is its first sentence. A new dict, so that the JSON
            # column is seen as changed (in-place mutation is invisible to SQLAlchemy).
            item.extra = {**(item.extra or {}), "title_derived": True}
    item.author = item.author or found.author
    item.published_at = item.published_at or found.published_at
    item.language = found.language or item.language
    item.text = found.text
    item.content_hash = found.content_hash
    # Fingerprinted by the worker along with the extraction: the dedupe stage finds it done.
    item.fingerprint = found.fingerprint
    item.status = ItemStatus.EXTRACTED
    item.error = item.error_reason = None
    item.error_transient = False


def record_failure(item: Item, reason: str, message: str, *, transient: bool) -> None:
    item.status = ItemStatus.ERROR
    item.error_reason = reason
    item.error = message
    item.error_transient = transient


def count_fetched(report: StageReport, url: str, item: Item) -> None:
    """One fetched item in a fetch report, from what was committed on it: extracted is done; rejected
    (fetched, and judged not an article) is skipped, its reason noted; an error is a failure with its
    reason. The fetch stage counts so in-process, and a queued run so after its workers' jobs (by
    then a later dedupe may have merged an extracted item: a duplicate was fetched too)."""
    if item.status in (ItemStatus.EXTRACTED, ItemStatus.DUPLICATE):
        report.done += 1
    elif item.status == ItemStatus.REJECTED:
        report.skipped += 1
        report.notes.append((url, item.error_reason or ""))
    elif item.status == ItemStatus.ERROR:
        report.fail(url, item.error_reason or "error")


def fetch_and_extract(
    store: Store, policy: FetchPolicy, *, retry_failed: bool = False, progress: Progress = _silent,
    item_ids: Iterable[int] | None = None, workers: int | None = None,
) -> StageReport:
    """``item_ids`` limits the run to those items (the web UI fetches only the links it was given).

    Pages are fetched by ``policy``'s threads and extracted by ``workers`` processes (default: one
    per core; ``Config.workers``) as they arrive; each page is committed with its extraction."""
    from .sources.http import fetch_many, robots_allowed

    report = StageReport("fetch")
    only = None if item_ids is None else set(item_ids)
    with store.session() as session:
        pending = pending_fetch(session, retry_failed=retry_failed, item_ids=only)
        todo = {fetch_url_of(item): item.id for item in pending}
        # Links a user added are fetched as feed readers do; links tidings found by itself
        # (``import --follow-links``) must first be allowed by the site's robots.txt.
        followed = [(fetch_url_of(item), item.id) for item in pending if (item.extra or {}).get("followed")]
        # The disk is read only for paths the user named (``tidings add PATH``, a links file's own
        # folder); a file: URL or bare path found inside an imported document is untrusted input.
        local = [(url, item.id) for item in pending
                 if not _fetchable(url := fetch_url_of(item)) and not (item.extra or {}).get("local")]
    for url, item_id in local:
        with store.session() as session:
            item = session.get(Item, item_id)
            assert item is not None
            record_failure(item, "local_file_refused",
                           f"{url}: a local file named inside an imported document is not read; "
                           "add it with `tidings add PATH` to read it", transient=False)
            count_fetched(report, url, item)
        todo.pop(url, None)
    followed = [(url, item_id) for url, item_id in followed if url in todo]
    for url, item_id in followed:
        if not robots_allowed(url, policy):
            with store.session() as session:
                item = session.get(Item, item_id)
                assert item is not None
                record_failure(item, "robots_disallowed", f"{url}: robots.txt disallows it", transient=False)
                count_fetched(report, url, item)
            del todo[url]
    total = len(todo)
    progress(0, total, "")
    from .stages.work import extract_page, pool_for, run_jobs

    def jobs() -> Iterator[tuple[tuple[str, Any], tuple[Any, ...] | None]]:
        for url, outcome in fetch_many(list(todo), policy):
            work = None if isinstance(outcome, FetchError) else (outcome.content, outcome.content_type, url)
            yield (url, outcome), work

    results = run_jobs(extract_page, jobs(), pool_for(workers, total))
    for number, ((url, outcome), found) in enumerate(results, start=1):
        _commit_fetched(store, todo[url], url, outcome, found, policy, report)
        progress(number, total, url)
    return report


def _commit_fetched(
    store: Store, item_id: int, url: str, outcome: Any, found: Extraction | None, policy: FetchPolicy,
    report: StageReport,
) -> None:
    """One fetched page and its extraction, committed together: a kill before this leaves the item
    pending, to be fetched again, and never half-stored."""
    with store.session() as session:
        item = session.get(Item, item_id)
        assert item is not None
        if isinstance(outcome, FetchError):
            record_failure(item, outcome.reason, str(outcome), transient=outcome.transient)
            count_fetched(report, url, item)
            return
        assert found is not None
        item.raw = outcome.content[: policy.max_bytes]
        item.raw_content_type = outcome.content_type
        if found.error_reason is None:
            store_extraction(item, found)
            count_fetched(report, url, item)
            return
        # The fetch worked and the page was judged: "not an article" is an outcome recorded on the
        # item, reported as skipped, not a failure of the run. (The message reads as the worker's
        # ExtractError did: "url: message".)
        record_failure(item, found.error_reason, f"{url}: {found.error or found.error_reason}", transient=False)
        item.status = ItemStatus.REJECTED
        if not item.title and found.title:
            item.title = found.title  # an error or home page still has a name to show
        count_fetched(report, url, item)


# --- dedupe ----------------------------------------------------------------------------------


def _imported_digests_of(session: Session, item_ids: Iterable[int]) -> dict[int, set[int]]:
    """Imported or published digests each item appears in (drafts are tidings' own proposals)."""
    rows = session.execute(
        select(DigestEntryRow.item_id, DigestEntryRow.digest_id)
        .join(Digest, Digest.id == DigestEntryRow.digest_id)
        .where(DigestEntryRow.item_id.in_(list(item_ids)), Digest.status != "draft")
    )
    found: dict[int, set[int]] = {}
    for item_id, digest_id in rows:
        found.setdefault(item_id, set()).add(digest_id)
    return found


def _fingerprint_missing(store: Store, workers: int | None) -> None:
    """Fingerprints for items with text and none yet (imported text; fetched pages come fingerprinted),
    or one of an older scheme (made before ``dedupe.is_current``'s scheme: recomputed from the text,
    never compared with new ones), committed per chunk so a killed run keeps what it computed."""
    from .stages.work import CHUNK, chunks, fingerprint_texts, pool_for, run_jobs

    with store.session() as session:
        rows = session.execute(
            select(Item.id, Item.fingerprint).where(Item.text.is_not(None), Item.duplicate_of_id.is_(None))
            .order_by(Item.id)
        ).all()
    ids = [item_id for item_id, blob in rows if not dedupe.is_current(blob)]

    pool = pool_for(workers, len(ids))

    def jobs() -> Iterator[tuple[list[int], tuple[Any, ...]]]:
        for chunk in chunks(ids, CHUNK if pool else 1):
            with store.session() as session:
                rows = session.execute(select(Item.id, Item.text).where(Item.id.in_(list(chunk)))).all()
            yield [r[0] for r in rows], ([r[1] or "" for r in rows],)

    for chunk_ids, prints in run_jobs(fingerprint_texts, jobs(), pool):
        with store.session() as session:
            for item_id, blob in zip(chunk_ids, prints or [], strict=True):
                item = session.get(Item, item_id)
                if item is not None and not dedupe.is_current(item.fingerprint):
                    item.fingerprint = blob  # None for a text too short: an old one is not kept


def merge_items(session: Session, duplicate: Item, keep: Item) -> None:
    """Fold ``duplicate`` into ``keep``: URLs, tags, links, sources and digest entries move over."""
    for url_row in list(duplicate.urls):
        url_row.item_id = keep.id
    for tag in duplicate.tags:
        if tag not in keep.tags:
            keep.tag_rows.append(ItemTag(tag=tag))
    for link in duplicate.links:
        if link not in keep.links:
            keep.link_rows.append(ItemLink(url=link))
    for row in session.scalars(select(ItemSource).where(ItemSource.item_id == duplicate.id)):
        if session.scalar(
            select(ItemSource).where(ItemSource.item_id == keep.id, ItemSource.source_id == row.source_id)
        ) is None:
            row.item_id = keep.id
    for entry in session.scalars(select(DigestEntryRow).where(DigestEntryRow.item_id == duplicate.id)):
        draft_has_keep = entry.digest.status == "draft" and any(e.item_id == keep.id for e in entry.digest.entries)
        if draft_has_keep and not entry.edited:
            session.delete(entry)  # a draft lists the article once, under its first URL
        else:
            entry.item_id = keep.id
    if duplicate.summary_origin == "human" and keep.summary_origin != "human":
        keep.summary, keep.summary_origin = duplicate.summary, "human"
    duplicate.duplicate_of_id = keep.id
    duplicate.status = ItemStatus.DUPLICATE


def dedupe_items(
    store: Store, *, threshold: float = 0.8, progress: Progress = _silent, workers: int | None = None
) -> StageReport:
    """Fingerprint the items that have none (in ``workers`` processes), then merge near-duplicates."""
    report = StageReport("dedupe")
    _fingerprint_missing(store, workers)
    with store.session() as session:
        rows = session.execute(
            select(Item.id, Item.fingerprint).where(Item.fingerprint.is_not(None), Item.duplicate_of_id.is_(None))
        ).all()
        # Only the current scheme's (all of them after _fingerprint_missing, but for an item whose text
        # is gone): fingerprints of two schemes are never compared.
        prints = {item_id: dedupe.minhash_from_bytes(blob) for item_id, blob in rows if dedupe.is_current(blob)}
        # Two entries of the same digest are never merged: the curator listed them apart on purpose.
        by_digest: dict[int, list[int]] = {}
        for item_id, digest_ids in _imported_digests_of(session, prints).items():
            for digest_id in digest_ids:
                by_digest.setdefault(digest_id, []).append(item_id)
        never = {frozenset((a, b)) for ids in by_digest.values() for a in ids for b in ids if a < b}
        pairs = dedupe.find_near_duplicates_in_fingerprints(prints.items(), threshold, never_merge=never)
    total = len(pairs)
    for number, (dup_id, keep_id) in enumerate(pairs, start=1):
        with store.session() as session:
            duplicate, keep = session.get(Item, dup_id), session.get(Item, keep_id)
            if duplicate is None or keep is None or duplicate.duplicate_of_id or keep.duplicate_of_id:
                continue
            merge_items(session, duplicate, keep)
        report.done += 1
        progress(number, total, str(dup_id))
    return report


# --- stories -----------------------------------------------------------------------------------


def story_items(store: Store, *, item_ids: list[int] | None = None, progress: Progress = _silent) -> StageReport:
    """Put the items that have no story yet into one (``stages/stories.py``). After dedupe, so a
    near-duplicate joins its keeper's story; items already placed never move."""
    from .stages.stories import assign_stories

    outcome = assign_stories(store, item_ids=item_ids, progress=progress)
    return StageReport("stories", done=outcome.assigned, new=outcome.new_stories, updated=outcome.joined,
                       item_ids=outcome.item_ids)


# --- summarize and classify ----------------------------------------------------------------


def _llm_notes(report: StageReport, task: str, outcome: Any) -> None:
    """An LLM stage's outcome folded into a StageReport: fallbacks and a stop are notes, not failures."""
    report.done = outcome.llm + outcome.offline
    if outcome.fallbacks:
        report.notes.append(
            (f"{len(outcome.fallbacks)} item(s), marked extra.llm_fallback.{task}", f"LLM {task} unusable, offline kept")
        )
    if outcome.stopped:
        report.notes.append(("the remaining items were done offline", f"LLM calls stopped ({outcome.stopped})"))


def summarize_items(
    store: Store, config: Config, *, progress: Progress = _silent, item_ids: Iterable[int] | None = None,
    llm: Any = None,
) -> StageReport:
    """Extractive summaries; with ``llm`` (a :class:`tidings.llm.gateway.LLM`) LLM summaries instead."""
    report = StageReport("summarize")
    use_llm = llm is not None and llm.available("summarize")
    with store.session() as session:
        ids = list(session.scalars(needs_summary(item_ids, upgrade=use_llm)))
    if use_llm:
        from .llm.tasks import summarize_stage

        outcome = summarize_stage(store, config, llm, ids, progress=progress)
        _llm_notes(report, "summarize", outcome)
        return report
    _summarize_offline(store, config, ids, report, progress)
    return report


def needs_summary(item_ids: Iterable[int] | None, *, upgrade: bool) -> Select[tuple[int]]:
    """The summarize stage's selection, whichever summarizer runs: items with text and no summary;
    with an LLM (``upgrade``), also those with only an extractive one, since a model makes them better
    and its cache makes a re-run free. A human summary is never selected."""
    missing = Item.summary.is_(None)
    wanted = or_(missing, Item.summary_origin == "extractive") if upgrade else missing
    query = select(Item.id).where(Item.duplicate_of_id.is_(None), Item.text.is_not(None), wanted)
    if item_ids is not None:  # the web UI's "re-run on this item", a job's own links
        query = query.where(Item.id.in_(list(item_ids)))
    return query.order_by(Item.id)


def needs_section(item_ids: Iterable[int] | None, *, unsure_below: float | None) -> Select[tuple[int]]:
    """The classify stage's selection: articles without a section; with an LLM for the unsure
    (``unsure_below``), also those a local classifier filed below that confidence. A human's or an
    LLM's choice is never selected."""
    wanted = Item.section.is_(None)
    if unsure_below is not None:
        machine = or_(
            Item.section_origin.is_(None),
            and_(Item.section_origin != "human", ~Item.section_origin.like("llm:%")),
        )
        unsure = or_(Item.section_confidence.is_(None), Item.section_confidence < unsure_below)
        wanted = or_(wanted, and_(machine, unsure))
    query = select(Item.id).where(Item.duplicate_of_id.is_(None), Item.kind == "article", wanted)
    if item_ids is not None:
        query = query.where(Item.id.in_(list(item_ids)))
    return query.order_by(Item.id)


def _summarize_offline(
    store: Store, config: Config, ids: Sequence[int], report: StageReport, progress: Progress
) -> None:
    """Extractive summaries of ``ids`` in ``config.workers`` processes, committed per chunk."""
    from .stages.work import CHUNK, chunks, pool_for, run_jobs, summarize_texts

    cfg = config.summarize
    # In-process, one item per commit as ever; across processes, a chunk per round trip and commit.
    pool = pool_for(config.workers, len(ids))

    def jobs() -> Iterator[tuple[list[int], tuple[Any, ...]]]:
        for chunk in chunks(ids, CHUNK if pool else 1):
            with store.session() as session:
                rows = session.execute(
                    select(Item.id, Item.text, Item.title).where(Item.id.in_(list(chunk))).order_by(Item.id)
                ).all()
            pairs = [(text or "", title) for _, text, title in rows]
            yield [r[0] for r in rows], (pairs, cfg.min_chars, cfg.max_chars, cfg.english_sentences)

    done = 0
    for chunk_ids, texts in run_jobs(summarize_texts, jobs(), pool):
        with store.session() as session:
            for item_id, text in zip(chunk_ids, texts or [], strict=True):
                item = session.get(Item, item_id)
                # Still without a summary: a curator may have written one since the text was read.
                if text and item is not None and item.summary is None:
                    item.summary, item.summary_origin = text, "extractive"
                    report.done += 1
                else:
                    report.skipped += 1
        done += len(chunk_ids)
        progress(done, len(ids), str(chunk_ids[-1]) if chunk_ids else "")


def default_classifier(store: Store, config: Config) -> Classifier:
    """The learned classifier when one has been trained, else the keyword rules (cold start, logged)."""
    return section_classifier(store, config)


CLASSIFY_BATCH = 500


def classify_items(
    store: Store, config: Config, *, classifier: Classifier | None = None, progress: Progress = _silent,
    item_ids: Iterable[int] | None = None, llm: Any = None,
) -> StageReport:
    """The local classifier files items; with ``llm``, the low-confidence ones go to the LLM."""
    report = StageReport("classify")
    classifier = classifier or default_classifier(store, config)
    use_llm = llm is not None and llm.available("classify")
    with store.session() as session:
        below = config.llm.classify_below if use_llm else None
        ids = list(session.scalars(needs_section(item_ids, unsure_below=below)))
    if use_llm:
        from .llm.tasks import classify_stage

        outcome = classify_stage(store, config, llm, classifier, ids, progress=progress)
        _llm_notes(report, "classify", outcome)
        return report
    # Batches: the learned model classifies a few hundred items in one vectorised pass, and a killed
    # run loses at most one batch, whose items are still unfiled and so classified again next time.
    done = 0
    from .stages.work import picklable, pool_for

    # A batch is split over the workers when the classifier can travel to them (a caller's own
    # classifier may not pickle: it then runs here, as it always did).
    pool = pool_for(config.workers, len(ids)) if len(ids) >= CLASSIFY_SPLIT else None
    if pool is not None and not picklable(classifier):
        pool = None
    for start in range(0, len(ids), CLASSIFY_BATCH):
        batch = ids[start : start + CLASSIFY_BATCH]
        with store.session() as session:
            # Section still unset: a curator may have filed one by hand since the ids were listed.
            items = session.scalars(
                select(Item).where(Item.id.in_(batch), Item.section.is_(None)).order_by(Item.id)
            ).all()
            predictions = _predict(classifier, [item_doc(i) for i in items], pool)
            for item, prediction in zip(items, predictions, strict=True):
                item.section = prediction.section
                item.section_confidence = prediction.confidence
                item.section_origin = prediction.method
                report.item_ids.append(item.id)
            report.done += len(items)
        done += len(batch)
        progress(done, len(ids), str(batch[-1]))
    return report


CLASSIFY_SPLIT = 64
"""Fewer items than this are classified in-process: the rules take ~1 ms an item."""


def _predict(classifier: Classifier, docs: list[Any], pool: Any) -> list[Any]:
    """Predictions for ``docs`` in order, over ``pool``'s workers when there is one."""
    from .stages.work import chunks, classify_docs, run_jobs

    if pool is None or len(docs) < CLASSIFY_SPLIT:
        return classify_docs(classifier, docs)
    size = -(-len(docs) // pool._max_workers)  # noqa: SLF001 - one part per worker
    parts = list(chunks(docs, size))
    results = dict(run_jobs(classify_docs, ((n, (classifier, part)) for n, part in enumerate(parts)), pool))
    return [p for n in range(len(parts)) for p in results[n] or []]


# --- the one loop --------------------------------------------------------------------------

STAGES: tuple[str, ...] = ("fetch", "dedupe", "stories", "summarize", "classify")
"""Stage names in the order items advance through them."""

StageProgress = Callable[[str], AbstractContextManager[Progress]]
"""``progress(stage)`` opens one stage's progress reporter (the CLI's bar, the web job's counter)."""


def _no_progress(_stage: str) -> AbstractContextManager[Progress]:
    return nullcontext(_silent)


# What ``force`` forgets before a stage runs again, and may put back when the stage finds nothing.
_FORCE_FIELDS = {
    "summarize": ("summary", "summary_origin"),
    "classify": ("section", "section_confidence", "section_origin"),
}


def _forget(store: Store, stage: str, item_ids: Iterable[int] | None) -> dict[int, tuple[Any, ...]]:
    """Clear a stage's result so it is recomputed. A human's result is cleared only for items named
    one by one (the curator asked for that item); a forced run over everything never touches it.

    Reads and clears only the stage's columns, and only where there is a result to clear: a forced
    run over a large store loads no item's text or page."""
    names = _FORCE_FIELDS[stage]
    columns = [getattr(Item, name) for name in names]
    origin = columns[-1]
    where = [Item.duplicate_of_id.is_(None), columns[0].is_not(None)]
    if item_ids is None:
        where.append(or_(origin.is_(None), origin != "human"))
    else:
        where.append(Item.id.in_(list(item_ids)))
    with store.session() as session:
        old = {row[0]: tuple(row[1:]) for row in session.execute(select(Item.id, *columns).where(*where))}
        if old:
            session.execute(update(Item).where(*where).values(dict.fromkeys(names)))
    return old


def _restore(store: Store, stage: str, old: dict[int, tuple[Any, ...]]) -> None:
    """Put back what a forced stage could not replace: an old summary beats none."""
    names = _FORCE_FIELDS[stage]
    first = getattr(Item, names[0])
    with store.session() as session:
        # The items still without a result, found without an IN over every forgotten id.
        empty = session.scalars(select(Item.id).where(first.is_(None))).all()
        rows = [{"id": item_id, **dict(zip(names, old[item_id], strict=True))} for item_id in empty if item_id in old]
        if rows:
            session.execute(update(Item), rows)  # by primary key, one executemany


def run(
    store: Store,
    config: Config,
    *,
    stages: Iterable[str] = STAGES,
    item_ids: Iterable[int] | None = None,
    force: bool = False,
    policy: FetchPolicy | None = None,
    llms: dict[str, Any] | None = None,
    classifier: Classifier | None = None,
    progress: StageProgress = _no_progress,
) -> list[StageReport]:
    """Advance items through ``stages`` (in :data:`STAGES` order): the one way anything moves items on.

    The CLI's ``run``/``fetch``/``dedupe``/``summarize``/``classify``, the web's add-links jobs and
    their resume, and the week view's one-item re-runs all call this. Each stage selects the items
    that still need it (limited to ``item_ids`` when given) and commits per item or batch, so a
    killed run resumes where it stopped. ``force`` re-does a stage's work: fetch retries failed
    items, summarize and classify recompute machine results (for items named in ``item_ids``, any
    result), keeping the old one when the stage finds nothing new. ``llms`` maps a task
    (``"summarize"``, ``"classify"``) to an :class:`tidings.llm.gateway.LLM`; without one, the offline
    default runs.

    >>> reports = run(store, config, stages=["summarize"], item_ids=[42], force=True)  # doctest: +SKIP
    """
    wanted = list(stages)
    unknown = [stage for stage in wanted if stage not in STAGES]
    if unknown:
        raise UsageError(f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
    ids = None if item_ids is None else list(item_ids)
    llms = llms or {}
    reports: list[StageReport] = []
    for stage in (s for s in STAGES if s in wanted):
        old = _forget(store, stage, ids) if force and stage in _FORCE_FIELDS else {}
        with progress(stage) as tick:
            if stage == "fetch":
                from .sources.urlcheck import FetchPolicy

                report = fetch_and_extract(
                    store, policy or FetchPolicy(), retry_failed=force, progress=tick, item_ids=ids,
                    workers=config.workers,
                )
            elif stage == "dedupe":
                report = dedupe_items(store, progress=tick, workers=config.workers)
            elif stage == "stories":
                report = story_items(store, item_ids=ids, progress=tick)
            elif stage == "summarize":
                report = summarize_items(store, config, progress=tick, item_ids=ids, llm=llms.get("summarize"))
            else:
                report = classify_items(
                    store, config, classifier=classifier, progress=tick, item_ids=ids, llm=llms.get("classify")
                )
        if old:
            _restore(store, stage, old)
        reports.append(report)
    return reports
