"""Collect: turn files, URLs and feeds into stored items. Parsers are pure; this is their I/O edge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from .config import Config
from .curate import assign_to_week, save_imported_digest
from .errors import FetchError, ImportFormatError, UsageError
from .pipeline import Progress, StageReport, _silent, ingest
from .records import ItemRecord, ParseResult
from .sources import decode_bytes, detect, walk
from .sources.links import parse_links, resolve_local
from .sources.urlcheck import FetchPolicy, check_url, is_local_reference, local_path
from .store import ItemSource, Source, Store, utcnow

log = logging.getLogger("tidings")

DEAD_AFTER_FAILURES = 5
DEAD_AFTER_SPAN = timedelta(days=3)


def as_url(target: str) -> str:
    """A CLI argument as a URL: local paths become ``file://`` URIs, URLs pass through."""
    if "://" in target or target.startswith(("post:", "note:", "blog:")):
        return target
    if ":" in target.split("/", 1)[0] and not Path(target).exists():
        return target  # ``mailto:x`` and friends: the fetcher refuses the scheme with a reason
    return resolve_local(target)


def add_urls(store: Store, targets: Iterable[str]) -> StageReport:
    """Queue what the user named. A local path or ``file:`` URL named here is marked ``local``:
    the fetcher reads from disk only for such items, never for links found inside documents."""
    records = []
    for target in targets:
        url = as_url(target)
        records.append(ItemRecord(url=url, extra={"local": True} if is_local_reference(url) else {}))
    return ingest(store, records, source_kind="cli", locator="tidings add", total=len(records))


@dataclass
class FileOutcome:
    path: Path
    format: str | None
    why: str
    skipped: str | None = None


def import_paths(
    store: Store,
    paths: list[str],
    fmt: str,
    config: Config,
    *,
    week: date | None = None,
    follow_links: bool = False,
    progress: Progress = _silent,
    on_file: Progress = _silent,
) -> tuple[StageReport, list[FileOutcome]]:
    from .sources import blog, feeds, notes, social
    from .sources import text as plain_text

    report = StageReport("import")
    outcomes: list[FileOutcome] = []
    # An OPML file is as untrusted here as in `feeds import` or the web's upload: the same check.
    feed_policy = FetchPolicy.from_config(config.fetch, allow_private=False, allow_files=False)
    files = list(walk(paths, fmt)) if paths != ["-"] else [(Path("-"), None, Path.cwd())]
    for number, (path, skip, root) in enumerate(files, start=1):
        on_file(number, len(files), str(path))
        if skip:
            outcomes.append(FileOutcome(path, None, "", skipped=skip))
            continue
        where = str(path)
        try:
            content = _read_stdin() if where == "-" else path.read_bytes()
        except OSError as exc:
            outcomes.append(FileOutcome(path, None, "unreadable"))
            _reject(report, [ImportFormatError(where, None, f"cannot read it: {exc.strerror or exc}")])
            continue
        decoded = decode_bytes(content)
        if decoded.binary:
            # Refused whatever --format says: binary bytes parsed as text become junk items.
            outcomes.append(FileOutcome(path, None, decoded.binary))
            _reject(report, [ImportFormatError(where, None, decoded.binary)])
            continue
        text = decoded.text
        chosen, why = (fmt, "as asked") if fmt != "auto" else detect(path, content, config.section_names, text)
        outcomes.append(FileOutcome(path, chosen, why))
        if chosen not in ("feed", "opml"):  # those read the bytes themselves, with their declared encoding
            _reject(report, [ImportFormatError(where, line, reason) for line, reason in decoded.problems])
        try:
            if chosen == "digest":
                _import_digest(store, text, where, config, week, report)
                continue
            if chosen == "opml":
                subscribe_opml(store, content, where, report, check=lambda url: url_refusal(url, feed_policy, resolve=False))
                continue
            if chosen == "links":
                result = parse_links(text, file=where)
                _localize(result, path.parent if where != "-" else Path.cwd())
            elif chosen == "social":
                result = social.parse_social(text, file=where)
            elif chosen == "notes":
                result = notes.parse_notes(text, file=where)
            elif chosen == "blog":
                result = blog.parse_blog_post(text, file=where, root=str(root))
            elif chosen == "text":
                result = plain_text.parse_text_page(text, file=where)
            elif chosen == "feed":
                parsed = feeds.parse_feed(content, file=where)
                result_items, result_errors = parsed.items, [*parsed.damage, *parsed.errors]
                ingest(store, result_items, source_kind="file", locator=where, report=report, progress=progress)
                _reject(report, result_errors)
                continue
            else:
                raise UsageError(f"unknown format {chosen!r}")
        except ImportFormatError as exc:
            _reject(report, [exc])
            continue
        first = len(report.item_ids)
        ingest(store, result.items, source_kind="file", locator=where, report=report, progress=progress,
               total=len(result.items))
        _reject(report, result.errors)
        if chosen == "links" and week is not None:
            assign_to_week(store, report.item_ids[first:], week, config)
        if follow_links:
            queued = [ItemRecord(url=link, extra={"followed": True}) for rec in result.items for link in rec.links]
            ingest(store, queued, source_kind="follow", locator=where, report=StageReport("follow"))
    return report, outcomes


def _localize(result: ParseResult, base: Path) -> None:
    """Local paths in a links file are relative to it, and may be read only when they lie in its
    folder or below: a links file is the list form of ``tidings add`` (the README demo links
    pages saved beside it), but one handed to us must not reach ``/etc`` or ``~/.ssh``."""
    folder = base.resolve()
    for record in result.items:
        if not record.url or not is_local_reference(record.url):
            continue
        try:
            record.url = resolve_local(record.url, base)
            target = local_path(record.url)
        except (ValueError, OSError, FetchError):
            continue  # the fetcher refuses it with its own reason
        if target is not None and target.resolve().is_relative_to(folder):
            record.extra["local"] = True


def _read_stdin() -> bytes:
    import sys

    return sys.stdin.buffer.read()


def _reject(report: StageReport, errors: Iterable[Exception]) -> None:
    for error in errors:
        report.fail(str(error), getattr(error, "reason", "invalid"))


def _import_digest(store: Store, text: str, where: str, config: Config, week: date | None, report: StageReport) -> None:
    from .sources.digest import infer_week, parse_digest

    doc = parse_digest(text, path=where)
    found, guessed = infer_week(where, doc.meta, week)
    if found is None:
        raise ImportFormatError(where, None, "no week date: pass --week, or put YYYY-MM-DD in the path")
    if guessed:
        log.warning("%s: the year of %s was guessed from the slug; pass --week to set it", where, found)
    state, _entries = save_imported_digest(store, doc, week=found, path=where, source_text=text, config=config)
    setattr(report, state, getattr(report, state) + 1)
    report.done += 1


# --- feeds ---------------------------------------------------------------------------------


def subscribe(store: Store, url: str, *, title: str | None = None, folder: str | None = None,
              html_url: str | None = None) -> bool:
    with store.session() as session:
        exists = session.scalar(select(Source).where(Source.kind == "feed", Source.locator == url))
        if exists:
            return False
        session.add(Source(kind="feed", locator=url, title=title, folder=folder, html_url=html_url))
        return True


def url_refusal(url: str, policy: FetchPolicy, *, resolve: bool = True) -> str | None:
    """Why ``url`` may not be added under ``policy``, or None when it may.

    Every way of adding a link or a feed asks this one question (in the web UI: the add-links
    box, feeds add and OPML uploads; in the CLI: ``add``, ``feeds add``, ``feeds import`` and
    ``import`` of an OPML file), so none of them is a way around the others. A name that does not
    resolve right now is accepted: the fetch retries it and shows its failure per item. Other
    schemes, private addresses (unless the policy allows them), missing files and malformed URLs
    are refused. ``resolve=False`` (OPML subscriptions: thousands of feeds) judges a host by what the URL
    says, without DNS; the fetch checks the resolved addresses when it connects."""
    try:
        check_url(url, policy, resolve=resolve)
    except FetchError as exc:
        if exc.transient:
            return None
        if exc.reason == "bad_scheme" and not policy.allow_files:
            return "bad_scheme: only http and https URLs are accepted here (no files, no paths)"
        return f"{exc.reason}: {str(exc).split(': ', 1)[-1]}"
    except ValueError as exc:  # urlsplit refuses e.g. "http://[::1" before check_url can say why
        return f"bad_url: malformed URL ({exc})"
    return None


def subscribe_opml(
    store: Store, content: bytes, where: str, report: StageReport,
    check: Callable[[str], str | None] | None = None,
) -> None:
    """Subscribe to every feed in an OPML document (folders kept).

    ``check`` (e.g. ``lambda url: url_refusal(url, policy)``) is asked about each feed first: an
    OPML file comes from elsewhere and may list ``file:`` or private addresses. A feed it refuses
    is a failure in ``report``, named with the reason, and is not subscribed."""
    from .sources.opml import parse_opml

    for feed in parse_opml(content, file=where):
        why = check(feed.url) if check is not None else None
        if why is not None:
            report.fail(feed.url, why)
            continue
        if subscribe(store, feed.url, title=feed.title, folder=feed.folder, html_url=feed.html_url):
            report.new += 1
        else:
            report.unchanged += 1
        report.done += 1


def feed_rows(store: Store) -> list[tuple[Source, int]]:
    with store.session() as session:
        counts = dict(
            session.execute(
                select(ItemSource.source_id, func.count(ItemSource.id)).group_by(ItemSource.source_id)
            ).all()
        )
        feeds = session.scalars(select(Source).where(Source.kind == "feed").order_by(Source.folder, Source.id)).all()
        return [(feed, counts.get(feed.id, 0)) for feed in feeds]


def export_feeds(store: Store) -> str:
    from .sources.opml import FeedRecord, export_opml

    return export_opml(
        FeedRecord(url=f.locator, title=f.title, html_url=f.html_url, folder=f.folder) for f, _ in feed_rows(store)
    )


def remove_feed(store: Store, url: str) -> bool:
    with store.session() as session:
        feed = session.scalar(select(Source).where(Source.kind == "feed", Source.locator == url))
        if feed is None:
            return False
        session.delete(feed)
        return True


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def poll_feeds(store: Store, policy: FetchPolicy, *, include_dead: bool = False,
               progress: Progress = _silent) -> StageReport:
    """Poll every live feed concurrently, at most ``policy.per_host_concurrency`` at a time per host
    (one OPML file can list dozens of feeds on one site); a broken feed records its error and the
    others go on."""
    from .sources.feeds import poll_feed
    from .sources.http import make_client, map_per_host

    report = StageReport("feeds")
    with store.session() as session:
        query = select(Source).where(Source.kind == "feed")
        if not include_dead:
            query = query.where(Source.dead.is_(False))
        feeds = [(f.id, f.locator, f.etag, f.last_modified) for f in session.scalars(query)]

    client = make_client(policy)

    def poll(job: tuple[int, str, str | None, str | None]) -> object:
        _feed_id, url, etag, modified = job
        return poll_feed(url, policy, etag=etag, last_modified=modified, client=client)

    polled = map_per_host(feeds, lambda job: job[1], poll, policy, when_idle=client.close)
    for number, (job, outcome) in enumerate(polled, start=1):
        _store_poll(store, job[0], outcome, report)
        progress(number, len(feeds), job[1])
    return report


def _store_poll(store: Store, feed_id: int, outcome: object, report: StageReport) -> None:
    now = utcnow()
    with store.session() as session:
        feed = session.get(Source, feed_id)
        assert feed is not None
        if isinstance(outcome, FetchError):
            reason = outcome.reason
            feed.last_error, feed.last_error_at = str(outcome), now
            feed.consecutive_failures = (feed.consecutive_failures or 0) + 1
            feed.first_failure_at = feed.first_failure_at or now
            span = now - (_aware(feed.first_failure_at) or now)
            if feed.consecutive_failures >= DEAD_AFTER_FAILURES and span >= DEAD_AFTER_SPAN:
                feed.dead = True
            report.fail(feed.locator, reason)
            return
        feed.last_success_at = now
        feed.consecutive_failures, feed.first_failure_at, feed.dead = 0, None, False
        feed.etag = outcome.etag or feed.etag  # type: ignore[attr-defined]
        feed.last_modified = outcome.last_modified or feed.last_modified  # type: ignore[attr-defined]
        parsed = outcome.feed  # type: ignore[attr-defined]
        if parsed is None:
            report.skipped += 1  # 304 Not Modified
            return
        if parsed.title and not feed.title:
            feed.title = parsed.title
        locator = feed.locator
        records = parsed.items
        errors = parsed.errors
    if errors and not records:
        with store.session() as session:
            feed = session.get(Source, feed_id)
            assert feed is not None
            feed.last_error, feed.last_error_at = "; ".join(str(e) for e in errors)[:2000], now
        report.fail(locator, "unparseable")
        return
    ingest(store, records, source_kind="feed", locator=locator, report=report)
