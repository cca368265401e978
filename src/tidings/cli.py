"""The ``tidings`` command: a thin layer that opens the store, calls one library function per
command and prints a Rich summary. Errors are translated once, in ``main``."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import collect, curate, pipeline
from .config import Config, load_config
from .errors import TidingsError, UsageError
from .pipeline import StageReport
from .sources import FORMATS
from .sources.http import FetchPolicy
from .store import Store, open_store

app = typer.Typer(
    help="tidings: turn a week of links into a curated, searchable digest.\n\n"
    "Start with:  tidings import --format links links.txt  then  tidings run --week 2024-06-09",
    rich_markup_mode="rich",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
feeds_app = typer.Typer(help="Subscribe to RSS/Atom feeds and poll them.", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(feeds_app, name="feeds")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("tidings")


@dataclass
class State:
    db: Path
    config_path: Path | None
    quiet: bool = False
    _config: Config | None = None
    _store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
            from .textutil import add_user_words

            add_user_words(self._config.user_dictionary)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db)
        return self._store


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj  # type: ignore[no-any-return]


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[Path, typer.Option(envvar="TIDINGS_DB", help="The SQLite store.")] = Path("tidings.db"),
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file (default: ./tidings.toml if present).")
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
    ctx.obj = State(db=db, config_path=config, quiet=quiet)


@contextmanager
def bar(st: State, label: str) -> Iterator[pipeline.Progress]:
    """A Rich progress bar on stderr, handed to a stage as its ``progress`` callback."""
    if st.quiet or not err.is_terminal and os.environ.get("TIDINGS_PROGRESS") != "1":
        yield pipeline._silent
        return
    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int, _what: str) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


def summary_table(reports: list[StageReport]) -> int:
    """Print done / skipped / failed per stage, then the failures; the exit code follows."""
    table = Table(title="tidings", show_edge=False)
    for column in ("stage", "done", "new", "updated", "unchanged", "skipped", "failed"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in reports:
        table.add_row(r.stage, str(r.done), str(r.new), str(r.updated), str(r.unchanged), str(r.skipped), str(r.failed))
    err.print(table)
    failures = [f for r in reports for f in r.failures]
    for what, reason in failures[:30]:
        err.print(f"  [red]failed[/red] {reason}: {what}", markup=True, highlight=False)
    if len(failures) > 30:
        err.print(f"  … and {len(failures) - 30} more (see `tidings items --json`)")
    return 1 if failures else 0


def fetch_policy(st: State, allow_private: bool = False) -> FetchPolicy:
    return FetchPolicy.from_config(st.config.fetch, allow_private=allow_private, allow_files=True)


def parse_week(value: str | None, st: State) -> date:
    if value is None:
        return curate.latest_week_end(curate.today(st.config), st.config.week_ends_on)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--week: expected YYYY-MM-DD, got {value!r}") from exc


@app.command()
def add(ctx: typer.Context, targets: Annotated[list[str], typer.Argument(help="URLs or local HTML files.")]) -> None:
    """Add links or saved pages to the store, to be fetched by `tidings fetch`.

    Examples:

        tidings add https://go.dev/blog/go1.22

        tidings add ./saved/article.html file:///tmp/page.html
    """
    st = state(ctx)
    report = collect.add_urls(st.store, targets)
    raise typer.Exit(summary_table([report]))


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files or directories (recursed); - for stdin.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")] = "auto",
    week: Annotated[str | None, typer.Option(help="Week date for a digest import (YYYY-MM-DD).")] = None,
    follow_links: Annotated[bool, typer.Option(help="Queue links found in posts as items to fetch.")] = False,
) -> None:
    """Import links, past digests, social-post archives, notes, blog posts, feed files or OPML.

    Examples:

        tidings import --format links week.txt

        tidings import --format digest ./blog/

        tidings import social/posts-2023-12-part1.md notes/ainotes.md
    """
    st = state(ctx)
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    with bar(st, "import") as progress:
        report, outcomes = collect.import_paths(
            st.store, paths, fmt, st.config, week=parse_week(week, st) if week else None,
            follow_links=follow_links, on_file=progress,
        )
    skipped = [o for o in outcomes if o.skipped]
    for outcome in outcomes:
        if fmt == "auto" and outcome.format:
            err.print(f"{outcome.path}: format {outcome.format} ({outcome.why})", highlight=False)
    if skipped:
        err.print(f"skipped {len(skipped)} file(s): " + "; ".join(f"{o.path.name} ({o.skipped})" for o in skipped[:5]),
                  highlight=False)
    report.skipped += len(skipped)
    raise typer.Exit(summary_table([report]))


@app.command()
def fetch(
    ctx: typer.Context,
    allow_private: Annotated[bool, typer.Option(help="Allow private, loopback and link-local addresses.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Also retry items that failed for good.")] = False,
) -> None:
    """Download pending items and extract their text (a re-run retries transient failures only).

    Examples:

        tidings fetch

        tidings fetch --retry-failed
    """
    st = state(ctx)
    with bar(st, "fetch") as progress:
        report = pipeline.fetch_and_extract(
            st.store, fetch_policy(st, allow_private), retry_failed=retry_failed, progress=progress
        )
    raise typer.Exit(summary_table([report]))


@app.command()
def dedupe(ctx: typer.Context) -> None:
    """Merge near-duplicate articles (the same text under two URLs).

    Example:

        tidings dedupe
    """
    st = state(ctx)
    with bar(st, "dedupe") as progress:
        report = pipeline.dedupe_items(st.store, progress=progress)
    raise typer.Exit(summary_table([report]))


@app.command()
def summarize(ctx: typer.Context) -> None:
    """Write extractive summaries for items that have text but no summary (human ones are kept).

    Example:

        tidings summarize
    """
    st = state(ctx)
    with bar(st, "summarize") as progress:
        report = pipeline.summarize_items(st.store, st.config, progress=progress)
    raise typer.Exit(summary_table([report]))


@app.command()
def classify(ctx: typer.Context) -> None:
    """File unsectioned items under the configured sections.

    Example:

        tidings classify
    """
    st = state(ctx)
    with bar(st, "classify") as progress:
        report = pipeline.classify_items(st.store, st.config, progress=progress)
    raise typer.Exit(summary_table([report]))


def render_week(st: State, week: date) -> str:
    from .publish import render_docusaurus

    curate.assemble_week(st.store, week, st.config)
    doc = curate.load_doc(st.store, week, st.config)
    assert doc is not None
    return render_docusaurus(doc, template_dir=st.config.digest.template_dir)


@app.command()
def digest(
    ctx: typer.Context,
    week: Annotated[str | None, typer.Option(help="Week end date YYYY-MM-DD (default: the latest).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write DIR/blog/YYYY-MM-DD/index.md.")] = None,
) -> None:
    """Render a week's digest as Docusaurus Markdown, to stdout or into a blog directory.

    Examples:

        tidings digest --week 2024-06-09

        tidings digest --week 2024-06-09 --out ./site
    """
    st = state(ctx)
    when = parse_week(week, st)
    text = render_week(st, when)
    if out_dir is None:
        sys.stdout.write(text)
    else:
        err.print(f"wrote {curate.write_digest(text, out_dir, when)}")


@app.command()
def run(
    ctx: typer.Context,
    week: Annotated[str | None, typer.Option(help="Week end date YYYY-MM-DD (default: the latest).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write DIR/blog/YYYY-MM-DD/index.md.")] = None,
    allow_private: Annotated[bool, typer.Option(help="Allow private, loopback and link-local addresses.")] = False,
) -> None:
    """Fetch → extract → dedupe → summarize → classify → digest, for one week.

    Examples:

        tidings run --week 2024-06-09

        tidings run --week 2024-06-09 --out ./site
    """
    st = state(ctx)
    when = parse_week(week, st)
    reports = []
    with bar(st, "fetch") as progress:
        reports.append(pipeline.fetch_and_extract(st.store, fetch_policy(st, allow_private), progress=progress))
    with bar(st, "dedupe") as progress:
        reports.append(pipeline.dedupe_items(st.store, progress=progress))
    with bar(st, "summarize") as progress:
        reports.append(pipeline.summarize_items(st.store, st.config, progress=progress))
    with bar(st, "classify") as progress:
        reports.append(pipeline.classify_items(st.store, st.config, progress=progress))
    text = render_week(st, when)
    digest_report = StageReport("digest", done=1)
    reports.append(digest_report)
    if out_dir is None:
        sys.stdout.write(text)
    else:
        err.print(f"wrote {curate.write_digest(text, out_dir, when)}")
    raise typer.Exit(summary_table(reports))


@app.command()
def items(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    status: Annotated[str | None, typer.Option(help="Only items with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="article, post, note or blog.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most N items.")] = None,
) -> None:
    """List stored items.

    Examples:

        tidings items

        tidings items --json --kind post | jq .title
    """
    from sqlalchemy import select

    from .store import Item

    st = state(ctx)
    with st.store.session() as session:
        query = select(Item).where(Item.duplicate_of_id.is_(None)).order_by(Item.id)
        if status:
            query = query.where(Item.status == status)
        if kind:
            query = query.where(Item.kind == kind)
        if limit:
            query = query.limit(limit)
        rows = session.scalars(query).all()
        if as_json:
            for item in rows:
                sys.stdout.write(json.dumps(pipeline.item_json(item), ensure_ascii=False) + "\n")
            return
        table = Table(show_edge=False)
        for column in ("id", "kind", "status", "section", "title"):
            table.add_column(column)
        for item in rows:
            table.add_row(str(item.id), item.kind, item.status, item.section or "", (item.title or item.url)[:70])
        out.print(table)


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON.

    Example:

        tidings --config tidings.toml config show
    """
    st = state(ctx)
    sys.stdout.write(st.config.model_dump_json(indent=2) + "\n")


@feeds_app.command("add")
def feeds_add(ctx: typer.Context, urls: Annotated[list[str], typer.Argument(help="Feed URLs.")]) -> None:
    """Subscribe to feeds.

    Example:

        tidings feeds add https://go.dev/blog/feed.atom
    """
    st = state(ctx)
    for url in urls:
        added = collect.subscribe(st.store, url)
        err.print(f"{'added' if added else 'already subscribed'}: {url}", highlight=False)


@feeds_app.command("import")
def feeds_import(ctx: typer.Context, files: Annotated[list[Path], typer.Argument(help="OPML files.")]) -> None:
    """Subscribe to every feed in OPML files (folders kept).

    Example:

        tidings feeds import feedly.opml
    """
    st = state(ctx)
    report = StageReport("feeds import")
    for file in files:
        if not file.is_file():
            raise UsageError(f"no such file: {file}")
        collect.subscribe_opml(st.store, file.read_bytes(), str(file), report)
    raise typer.Exit(summary_table([report]))


@feeds_app.command("export")
def feeds_export(ctx: typer.Context) -> None:
    """Write the subscriptions as OPML to stdout.

    Example:

        tidings feeds export > feeds.opml
    """
    sys.stdout.write(collect.export_feeds(state(ctx).store))


@feeds_app.command("remove")
def feeds_remove(ctx: typer.Context, url: str) -> None:
    """Unsubscribe from a feed.

    Example:

        tidings feeds remove https://go.dev/blog/feed.atom
    """
    if not collect.remove_feed(state(ctx).store, url):
        raise UsageError(f"not subscribed: {url}")


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """List feeds with last success, last error and item count; dead feeds are marked.

    Example:

        tidings feeds list
    """
    table = Table(show_edge=False)
    for column in ("url", "folder", "items", "last success", "last error", "dead"):
        table.add_column(column, overflow="fold")
    for feed, count in collect.feed_rows(state(ctx).store):
        table.add_row(
            feed.locator, feed.folder or "", str(count),
            feed.last_success_at.isoformat(timespec="minutes") if feed.last_success_at else "",
            (feed.last_error or "")[:80], "dead" if feed.dead else "",
        )
    Console(width=200).print(table)


@feeds_app.command("fetch")
def feeds_fetch(
    ctx: typer.Context,
    include_dead: Annotated[bool, typer.Option("--all", help="Also poll feeds marked dead.")] = False,
    allow_private: Annotated[bool, typer.Option(help="Allow private, loopback and link-local addresses.")] = False,
) -> None:
    """Poll feeds (conditional GET with ETag / Last-Modified); new entries become items.

    Examples:

        tidings feeds fetch

        tidings feeds fetch --all
    """
    st = state(ctx)
    with bar(st, "feeds") as progress:
        report = collect.poll_feeds(
            st.store, FetchPolicy.from_config(st.config.fetch, allow_private=allow_private),
            include_dead=include_dead, progress=progress,
        )
    raise typer.Exit(summary_table([report]))


def main() -> None:
    """Entry point: our errors become a message and an exit code, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except TidingsError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} (run with -vv for the traceback)")
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
