"""The ``tidings`` command: a thin layer that opens the store, calls one library function per
command and prints a Rich summary. Errors are translated once, in ``main``.

Start-up is part of the interface: ``--help``, ``--version`` and the light commands must not pay
for what they never use (sklearn, numpy, httpx, FastAPI, trafilatura, the LLM clients cost far
more to import than those commands take to run). So this module imports only typer and the
standard library at the top; every command imports what it needs inside its body, and the
names used only in annotations are imported under ``TYPE_CHECKING``.
``tests/test_cli_edges.py`` checks that ``import tidings.cli`` stays light."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperOption

from .errors import EXTRACTOR_LOGGERS, TidingsError, UsageError

if TYPE_CHECKING:  # annotations only: importing these at start-up is what made every command slow
    from rich.console import Console

    from . import pipeline
    from .config import Config
    from .llm.gateway import LLM
    from .pipeline import StageReport
    from .search.query import Filters as SearchFilters
    from .sources.urlcheck import FetchPolicy
    from .store import Store

# The formats `import --format` takes, for its help text. Importing them from tidings.sources would
# load YAML and the importers for every command; tests/test_cli_edges.py checks they stay the same.
IMPORT_FORMATS = ("auto", "links", "digest", "social", "notes", "blog", "feed", "opml", "text")

_option_type = TyperOption.display_type_rich
_argument_type = TyperArgument.display_type_rich


def _option_value_type(option: TyperOption, ctx: typer.Context) -> str | None:
    """Typer's rich help shows a value type even for flags and counters, which take no value
    (``--help -h <bool>`` on every command, ``-v <int>``); its plain help leaves them out. So here."""
    if option.is_flag or option.count:
        return None
    return _option_type(option, ctx)


def _argument_value_type(argument: TyperArgument, ctx: typer.Context) -> str | None:
    """An argument named by its metavar (``URL...``) needs no ``<list[str]>`` beside it."""
    return None if argument.metavar else _argument_type(argument, ctx)


TyperOption.display_type_rich = _option_value_type  # type: ignore[method-assign]
TyperArgument.display_type_rich = _argument_value_type  # type: ignore[method-assign]

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
site_app = typer.Typer(help="Build the static site of the digests.", no_args_is_help=True)
app.add_typer(site_app, name="site")
eval_app = typer.Typer(help="Measure search, ask and the classifier on labelled data.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
store_app = typer.Typer(help="Move a whole store between SQLite and PostgreSQL.", no_args_is_help=True)
app.add_typer(store_app, name="store")
stories_app = typer.Typer(help="Stories: the same story from several sources, split and merged by hand.",
                          no_args_is_help=True)
app.add_typer(stories_app, name="stories")
users_app = typer.Typer(help="Curators of a shared web app: each has a named token.", no_args_is_help=True)
app.add_typer(users_app, name="users")
queue_app = typer.Typer(help="The job queue of a PostgreSQL store (`tidings worker` runs its jobs).")
app.add_typer(queue_app, name="queue")



class LazyConsole:
    """A ``rich.console.Console`` made on first use. Rich costs tens of milliseconds to import,
    more than ``--version`` or ``items --json`` take in all. Attributes set before then (``quiet``)
    become constructor options; every other use goes to the real console."""

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            object.__setattr__(self, "_console", Console(**self._options))
        return self._console  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._console is None:
            self._options[name] = value
        else:
            setattr(self._console, name, value)


out = LazyConsole()
# Messages are not wrapped at the terminal's width: a URL or a path must stay whole to be copied.
err = LazyConsole(stderr=True, soft_wrap=True)
"""Notes on stderr (progress, what was written, summaries): ``--quiet`` silences them."""
errors = LazyConsole(stderr=True, soft_wrap=True)
"""Errors on stderr: never silenced."""
log = logging.getLogger("tidings")


@dataclass
class State:
    db: str
    """A SQLite file path or a database URL (``postgresql://…``), as given."""
    config_path: Path | None
    quiet: bool = False
    budget_tokens: int | None = None
    _config: Config | None = None
    _store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from . import load_config

            self._config = load_config(self.config_path)
            if self._config.user_dictionary:  # the segmenter's module (its regexes) loads only when needed
                from .textutil import add_user_words

                add_user_words(self._config.user_dictionary)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            from . import open_store

            self._store = open_store(self.db)
        return self._store


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tidings")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


def show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tidings {package_version()}\n")  # plain text: no need to load rich for it
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str, typer.Option(envvar="TIDINGS_DB", metavar="PATH|URL",
                          help="The store: a SQLite file, or a postgresql://user@host/db URL.")
    ] = "tidings.db",
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="PATH", help="Config file (default: ./tidings.toml if present)."),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, show_default=False,
                          help="More log output on stderr: -v for progress, -vv for debugging.")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the output itself and errors: no notes, no progress.")
    ] = False,
    budget_tokens: Annotated[
        int | None, typer.Option("--budget-tokens", min=0, metavar="N",
                                 help="Make no LLM call that would pass N tokens in all.")
    ] = None,
    _version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=show_version, help="Print the version and exit.")
    ] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
    # The extractors log their own doubts about a page ("parsed tree length: 1 …") as errors; tidings
    # records the page's outcome with its reason, so their messages are only for -vv.
    for name in EXTRACTOR_LOGGERS:
        logging.getLogger(name).setLevel(level if verbose > 1 else logging.CRITICAL)
    err.quiet = quiet  # the notes console; ``errors`` always prints
    ctx.obj = State(db=db, config_path=config, quiet=quiet, budget_tokens=budget_tokens)
    if config is not None and not ctx.resilient_parsing:
        _ = ctx.obj.config  # an explicit --config is checked before any work, so a bad one is exit 2


def bars(st: State) -> Callable[[str], AbstractContextManager[pipeline.Progress]]:
    """One progress bar per stage, for :func:`tidings.pipeline.run`."""
    return lambda stage: bar(st, stage)


@contextmanager
def bar(st: State, label: str) -> Iterator[pipeline.Progress]:
    """A Rich progress bar on stderr, handed to a stage as its ``progress`` callback."""
    if st.quiet or not err.is_terminal and os.environ.get("TIDINGS_PROGRESS") != "1":
        yield _silent
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int, _what: str) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


def _silent(_done: int, _total: int, _label: str) -> None:
    """No progress shown (``pipeline._silent``'s twin: that module is too heavy to import for it)."""


def summary_table(reports: list[StageReport]) -> int:
    """Print done / skipped / failed per stage, then the failures; the exit code follows."""
    from rich.table import Table

    table = Table(title="tidings", show_edge=False)
    for column in ("stage", "done", "new", "updated", "unchanged", "skipped", "failed"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for r in reports:
        table.add_row(r.stage, str(r.done), str(r.new), str(r.updated), str(r.unchanged), str(r.skipped), str(r.failed))
    failures = [f for r in reports for f in r.failures]
    err.print(table)  # notes: --quiet leaves only the failures, which are errors
    for what, reason in [n for r in reports for n in r.notes][:30]:
        err.print(f"  [yellow]skipped[/yellow] {escape_markup(reason)}: {escape_markup(what)}", highlight=False)
    for what, reason in failures[:30]:
        errors.print(f"  [red]failed[/red] {escape_markup(reason)}: {escape_markup(what)}", highlight=False)
    if len(failures) > 30:
        errors.print(f"  … and {len(failures) - 30} more (see `tidings items --json`)", highlight=False)
    return 1 if failures else 0


def fetch_policy(st: State, allow_private: bool = False) -> FetchPolicy:
    from .sources.urlcheck import FetchPolicy

    return FetchPolicy.from_config(st.config.fetch, allow_private=allow_private, allow_files=True)


NoWait = Annotated[bool, typer.Option("--no-wait", help="PostgreSQL store: queue the jobs and return at once.")]


def queued_run(st: State, stages: list[str], *, no_wait: bool, force: bool = False, allow_private: bool = False,
               llm: tuple[str, ...] = (), budget_tokens: int | None = None) -> list[StageReport] | None:
    """On a PostgreSQL store, the stages as queue jobs for `tidings worker`s: progress from the job
    states until none waits (or at once with --no-wait). Pages that are files on this machine are
    fetched by this process first (a worker never reads a file). None on SQLite, or when no worker is
    alive and the caller would wait: the stages run in-process."""
    if not st.db.startswith("postgres"):
        return None  # procrastinate is not even imported: SQLite commands start as fast as ever
    from . import queue

    if not no_wait and not queue.live_workers(st.store):
        # Waiting on a queue nobody serves would never end: without a worker, this process does the work.
        err.print("no `tidings worker` is running against this database: running the stages in this process",
                  highlight=False)
        return None
    queued = queue.enqueue(st.store, st.config, stages=stages, force=force, allow_private=allow_private, llm=llm,
                           budget_tokens=budget_tokens if budget_tokens is not None else st.budget_tokens,
                           local_policy=fetch_policy(st, allow_private), progress=bars(st))
    if queued.read_here:
        err.print(f"read {len(queued.read_here)} local page(s) in this process", highlight=False)
    err.print(f"queued {queued.jobs} job(s) (run {queued.run})", highlight=False)
    if no_wait:
        err.print("not waiting: `tidings queue` shows the jobs", highlight=False)
        return [queue.fetch_report(st.store, queued.read_here)] if queued.read_here else []
    with bar(st, "jobs") as tick:
        return queue.wait(st.store, queued.run, progress=tick, read_here=queued.read_here, idle_note=lambda: err.print(
            "no job has started yet: is a `tidings worker` running against this database?", highlight=False))


# A week's window and its neighbours must fit in ``date``; no digest predates 1900.
FIRST_WEEK, LAST_WEEK = date(1900, 1, 1), date(9998, 12, 31)


def parse_week(value: str | None, st: State) -> date:
    if value is None:
        from . import curate

        return curate.default_week(st.store, st.config)
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--week: expected YYYY-MM-DD, got {value!r}") from exc
    if not FIRST_WEEK <= day <= LAST_WEEK:
        raise UsageError(f"--week: {value} is out of range ({FIRST_WEEK} to {LAST_WEEK})")
    return day


def week_end_of(st: State, day: date) -> date:
    """The end of the week ``day`` falls in, said on stderr when that is another day. A digest
    stored under ``day`` itself (an imported one dated otherwise) is kept: it is what was asked for."""
    from datetime import timedelta

    from . import curate

    end = curate.latest_week_end(day + timedelta(days=6), st.config.week_ends_on)
    if end == day:
        return day
    if curate.digest_status(st.store, day) is not None:
        return day
    err.print(f"{day} is not a week end; using {end}", highlight=False)
    return end


def url_policy(st: State, *, allow_private: bool, allow_files: bool) -> FetchPolicy:
    from .sources.urlcheck import FetchPolicy

    return FetchPolicy.from_config(st.config.fetch, allow_private=allow_private, allow_files=allow_files)


def refuse_urls(targets: list[str], policy: FetchPolicy, what: str, as_url: Callable[[str], str] = str) -> None:
    """Raise UsageError (exit 2) naming every argument the URL check refuses, before anything is
    stored: a command adds all its arguments or none."""
    from .collect import url_refusal  # the one check every way of adding a URL or feed goes through

    bad = [(target, why) for target in targets if (why := url_refusal(as_url(target), policy)) is not None]
    if bad:
        raise UsageError(f"nothing was added; {what}:\n" + "\n".join(f"  {t}: {why}" for t, why in bad))


@app.command()
def add(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(metavar="URL|FILE...", help="http(s) URLs or local HTML files.")],
) -> None:
    """Add links or saved pages to the store, to be fetched by `tidings fetch`.

    Every argument must be an http(s) URL with a host, or an existing file (a path or a file://
    URL); otherwise nothing is added and the exit code is 2.

    Examples:

        tidings add https://go.dev/blog/go1.22

        tidings add ./saved/article.html file:///tmp/page.html
    """
    from . import add_urls
    from .collect import as_url

    st = state(ctx)
    # Private addresses are allowed here: `tidings fetch --allow-private` decides at fetch time.
    policy = url_policy(st, allow_private=True, allow_files=True)
    refuse_urls(targets, policy, "each must be an http(s) URL or an existing file", as_url=as_url)
    report = add_urls(st.store, targets)
    raise typer.Exit(summary_table([report]))


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files or directories (recursed); - for stdin.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(IMPORT_FORMATS)}.")] = "auto",
    week: Annotated[str | None, typer.Option(help="Week date for a digest import (YYYY-MM-DD).")] = None,
    follow_links: Annotated[bool, typer.Option(help="Queue links found in posts as items to fetch.")] = False,
) -> None:
    """Import links, past digests, social-post archives, notes, blog posts, feed files or OPML.

    Examples:

        tidings import --format links week.txt

        tidings import --format digest ./blog/

        tidings import social/posts-2023-12-part1.md notes/ainotes.md
    """
    from . import import_paths

    st = state(ctx)
    if fmt not in IMPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(IMPORT_FORMATS)}, not {fmt!r}")
    with bar(st, "import") as progress:
        report, outcomes = import_paths(
            st.store, paths, st.config, fmt=fmt, week=parse_week(week, st) if week else None,
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
    no_wait: NoWait = False,
) -> None:
    """Download pending items and extract their text (a re-run retries transient failures only).

    Examples:

        tidings fetch

        tidings fetch --retry-failed
    """
    from . import run as run_stages

    st = state(ctx)
    reports = queued_run(st, ["fetch"], no_wait=no_wait, force=retry_failed, allow_private=allow_private)
    if reports is None:
        reports = run_stages(
            st.store, st.config, stages=["fetch"], force=retry_failed, policy=fetch_policy(st, allow_private),
            progress=bars(st),
        )
    raise typer.Exit(summary_table(reports))


@app.command()
def dedupe(ctx: typer.Context) -> None:
    """Merge near-duplicate articles (the same text under two URLs).

    Example:

        tidings dedupe
    """
    from . import run as run_stages

    st = state(ctx)
    raise typer.Exit(summary_table(run_stages(st.store, st.config, stages=["dedupe"], progress=bars(st))))


LLMFlag = Annotated[
    bool | None, typer.Option("--llm/--no-llm", help="Use the configured model (default: llm.use_for in the config).")
]
BudgetOption = Annotated[
    int | None, typer.Option("--budget-tokens", min=0, help="Make no LLM call that would pass N tokens in all.")
]


def llm_gateway(st: State, task: str, wanted: bool | None = True, budget_tokens: int | None = None) -> LLM | None:
    """The LLM gateway for a command, or None when the command runs offline."""
    use = wanted if wanted is not None else task in st.config.llm.use_for
    if not use:
        return None
    from .llm.gateway import LLM

    gateway = LLM(st.config, st.store, budget_tokens=budget_tokens if budget_tokens is not None else st.budget_tokens)
    if not gateway.available(task):
        raise UsageError(f"--llm: no model for {task}: add [models.NAME] and routes.{task} (or routes.default)")
    return gateway


def llm_footer(gateway: LLM | None) -> None:
    """One line on stderr: what the models cost in this run."""
    if gateway is None:
        return
    stats, budget = gateway.stats, gateway.budget
    line = (f"llm: {stats.calls} calls, {stats.hits} cache hits, {stats.retries} retries, "
            f"{stats.tokens_in} tokens in, {stats.tokens_out} out")
    if budget.limit is not None:
        line += f"; budget {budget.used}/{budget.limit}"
    if budget.exceeded is not None:
        line += f" (reached: {budget.exceeded})"
    err.print(line, highlight=False)
    gateway.close()


@app.command()
def summarize(ctx: typer.Context, llm: LLMFlag = None, budget_tokens: BudgetOption = None,
              no_wait: NoWait = False) -> None:
    """Summarize items that have text but no summary (human summaries are never replaced).

    Offline the summary is extractive. With --llm the configured model writes it (in
    summarize.language), replacing extractive ones; an answer that fails validation twice falls
    back to the extractive summary and the item is marked.

    Examples:

        tidings summarize

        tidings summarize --llm --budget-tokens 200000
    """
    from . import run as run_stages

    st = state(ctx)
    gateway = llm_gateway(st, "summarize", llm, budget_tokens)
    reports = queued_run(st, ["summarize"], no_wait=no_wait, llm=("summarize",) if gateway else (),
                         budget_tokens=budget_tokens)
    if reports is None:
        reports = run_stages(st.store, st.config, stages=["summarize"], llms={"summarize": gateway}, progress=bars(st))
    llm_footer(gateway)
    raise typer.Exit(summary_table(reports))


@app.command()
def classify(
    ctx: typer.Context,
    llm: LLMFlag = None,
    budget_tokens: BudgetOption = None,
    train: Annotated[
        bool, typer.Option("--train", help="First train the section model on past digests and corrections.")
    ] = False,
    no_wait: NoWait = False,
) -> None:
    """File items under the sections, and suggest tags from the existing vocabulary.

    The model learned from past digests decides (the keyword rules until one is trained); with
    --llm the configured model is asked about the items it is unsure of (confidence below
    llm.classify_below). --train retrains first: below classify.min_training_items sectioned items
    it keeps the rules and says so.

    Examples:

        tidings classify --train

        tidings classify

        tidings classify --llm
    """
    from . import run as run_stages
    from .stages import classify as learned

    st = state(ctx)
    if train:
        trained = learned.train_section_model(st.store, st.config)
        err.print(trained.message, highlight=False)
    classifier = learned.section_classifier(st.store, st.config)
    err.print(
        f"classifying with the section model v{classifier.version}" if isinstance(classifier, learned.LearnedClassifier)
        else "classifying with the keyword rules (no trained model: run `tidings classify --train`)",
        highlight=False,
    )
    gateway = llm_gateway(st, "classify", llm, budget_tokens)
    queued = queued_run(st, ["classify"], no_wait=no_wait, llm=("classify",) if gateway else (),
                        budget_tokens=budget_tokens)
    if queued is not None:  # tags are suggested by the in-process run only (see docs/SCALE.md)
        llm_footer(gateway)
        raise typer.Exit(summary_table(queued))
    [report] = run_stages(
        st.store, st.config, stages=["classify"], classifier=classifier, llms={"classify": gateway}, progress=bars(st)
    )
    if report.item_ids:
        learned.suggest_item_tags(st.store, st.config, report.item_ids)
    llm_footer(gateway)
    raise typer.Exit(summary_table([report]))


def translation_source(st: State, target: str, allow_private: bool) -> str:
    """Markdown to translate from an item id, a URL (stored, else fetched) or a file."""
    from . import curate
    from .stages import extract
    from .store import Item

    def from_item(item: Item | None) -> str | None:
        if item is None or not item.text:
            return None
        title = (item.title or "").strip()
        body = item.text.strip()
        return f"# {title}\n\n{body}\n" if title and not body.startswith("#") else body + "\n"

    if target.isdigit():
        with st.store.session() as session:
            found = from_item(curate.find_item_by(session, target))
        if found is None:
            raise UsageError(f"no item {target} with text (see `tidings items`)")
        return found
    if target.startswith(("http://", "https://")):
        with st.store.session() as session:
            found = from_item(curate.find_item_by(session, target))
        if found is not None:
            return found
        from .errors import FetchError
        from .sources.http import fetch_many

        for _url, outcome in fetch_many([target], fetch_policy(st, allow_private)):
            if isinstance(outcome, FetchError):
                raise outcome
            page = extract.extract(outcome.content, url=target, content_type=outcome.content_type)
            return f"# {page.title}\n\n{page.text}\n" if page.title else page.text + "\n"
        raise UsageError(f"could not fetch {target}")
    path = Path(target)
    if not path.is_file():
        raise UsageError(f"not an item id, a URL or a file: {target}")
    if path.suffix.lower() in (".html", ".htm"):
        from .stages import extract

        page = extract.extract(path.read_bytes(), url=path.resolve().as_uri())
        return f"# {page.title}\n\n{page.text}\n" if page.title else page.text + "\n"
    return path.read_text(encoding="utf-8")


@app.command()
def translate(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="An item id, a URL or a Markdown/HTML file.")],
    show_steps: Annotated[bool, typer.Option(help="Also print each chunk's three steps.")] = False,
    to: Annotated[str | None, typer.Option("--to", help="Target language (default: llm.translate_language).")] = None,
    allow_private: Annotated[bool, typer.Option(help="Allow private, loopback and link-local addresses.")] = False,
    budget_tokens: BudgetOption = None,
) -> None:
    """Translate an article in three steps: literal, a list of problems, a free re-translation.

    Markdown structure is kept; code blocks and link targets never reach the model; the glossary in
    the config fixes terms. Long texts go in chunks along their sections.

    Examples:

        tidings translate 42 --to zh

        tidings translate notes/post.md --show-steps > post.zh.md
    """
    from .llm.translate import dumps_steps, translate_markdown

    st = state(ctx)
    gateway = llm_gateway(st, "translate", True, budget_tokens)
    assert gateway is not None
    markdown = translation_source(st, target, allow_private)
    try:
        result = translate_markdown(gateway, st.config, markdown, language=to)
    finally:
        llm_footer(gateway)
    sys.stdout.write(dumps_steps(result) if show_steps else result.text)
    for reason in result.fallbacks:
        err.print(f"  [yellow]fallback[/yellow] {reason}", markup=True, highlight=False)


@app.command()
def models(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Ask each model for a one-word answer.")] = True,
) -> None:
    """List the configured models and the tasks routed to them, and check that each one answers.

    Example:

        tidings models
    """
    from rich.console import Console
    from rich.table import Table

    from .config import LLM_TASKS
    from .llm.gateway import LLM, check_model

    st = state(ctx)
    cfg = st.config
    if not cfg.models:
        err.print("no models configured: tidings runs offline (add [models.NAME] to tidings.toml)", markup=False)
        return
    gateway = LLM(cfg, None)
    table = Table(show_edge=False)
    for column in ("name", "provider", "model", "endpoint", "tasks", "timeout", "status"):
        table.add_column(column, overflow="fold")
    failed = 0
    for name, model in cfg.models.items():
        tasks = [t for t in LLM_TASKS if (r := gateway.route(t)) is not None and r.name == name]
        status = "not checked"
        if check:
            result = check_model(name, model)
            failed += not result.ok
            status = f"ok, {result.ms} ms: {result.detail}" if result.ok else f"FAILED: {result.detail}"
        endpoint = model.base_url or ("https://api.openai.com/v1" if model.provider == "openai" else model.model_path or "")
        table.add_row(name, model.provider, model.model or "", endpoint, ", ".join(tasks) or "-",
                      f"{model.timeout:g}s", status)
    Console(width=200).print(table)
    raise typer.Exit(1 if failed else 0)


@app.command()
def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model and task.")] = False,
) -> None:
    """Show LLM usage per model and task: calls, cache hits, tokens, time and estimated cost.

    Counted from the call ledger in the store; the cost uses `prices` in the config (per million
    tokens, e.g. prices.deepseek-chat = {input = 0.27, output = 1.10}).

    Example:

        tidings stats
    """
    from dataclasses import asdict

    from rich.table import Table

    from .llm.gateway import usage_rows

    st = state(ctx)
    rows = usage_rows(st.store, st.config)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
        return
    if not rows:
        err.print("no LLM calls recorded yet")
        return
    table = Table(show_edge=False)
    for column in ("model", "task", "calls", "cache hits", "tokens in", "tokens out", "seconds", "est. cost"):
        table.add_column(column, justify="left" if column in ("model", "task") else "right")
    for row in rows:
        table.add_row(row.model, row.task, str(row.calls), str(row.hits), str(row.tokens_in), str(row.tokens_out),
                      f"{row.ms / 1000:.1f}", "-" if row.cost is None else f"{row.cost:.4f}")
    costs = [r.cost for r in rows if r.cost is not None]
    table.add_row("total", "", str(sum(r.calls for r in rows)), str(sum(r.hits for r in rows)),
                  str(sum(r.tokens_in for r in rows)), str(sum(r.tokens_out for r in rows)),
                  f"{sum(r.ms for r in rows) / 1000:.1f}", f"{sum(costs):.4f}" if costs else "-")
    out.print(table)


@app.command()
def digest(
    ctx: typer.Context,
    week: Annotated[
        str | None, typer.Option(metavar="DATE", help="A day of the week, YYYY-MM-DD (default: the latest week that has ended, or the week under way when only it has items).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Write into DIR in the format's own layout.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="NAME", help="docusaurus, hugo, jekyll, markdown or html.")
    ] = "docusaurus",
) -> None:
    """Render a week's digest (Docusaurus Markdown by default), to stdout or into a blog directory.

    Read-only: the store is not changed. A week without a draft is rendered from its candidates
    as `tidings run` or the week view would draft it; a day that is not a week end means the week
    it falls in.

    With --out: docusaurus writes DIR/blog/DATE/index.md, hugo DIR/content/posts/DATE/index.md,
    jekyll DIR/_posts/DATE-SLUG.md (drafts: DIR/_drafts/SLUG.md), markdown DIR/DATE.md and
    html DIR/DATE.html.

    Examples:

        tidings digest --week 2024-06-09

        tidings digest --week 2024-06-09 --out ./site

        tidings digest --week 2024-06-09 --format hugo --out ./my-hugo-site
    """
    from . import preview_week
    from .publish import formats

    st = state(ctx)
    formats.renderer(fmt)  # a bad --format is a usage error before any work
    when = parse_week(week, st)
    if week is not None:
        when = week_end_of(st, when)
    doc = preview_week(st.store, when, st.config)
    if doc is None:
        # Not an error: an empty week is a fact. The note says so; stdout stays empty.
        err.print(f"nothing for week {when}: no digest and no candidates (add links, then `tidings run`)",
                  highlight=False)
        return
    text = formats.render(doc, fmt, st.config.digest.template_dir)
    if out_dir is None:
        sys.stdout.write(text)
    else:
        err.print(f"wrote {formats.write_output(text, fmt, out_dir, doc)}")


@app.command()
def run(
    ctx: typer.Context,
    week: Annotated[str | None, typer.Option(help="A day of the week, YYYY-MM-DD (default: as for digest).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write DIR/blog/YYYY-MM-DD/index.md.")] = None,
    allow_private: Annotated[bool, typer.Option(help="Allow private, loopback and link-local addresses.")] = False,
    no_wait: NoWait = False,
) -> None:
    """Fetch → extract → dedupe → summarize → classify → digest, for one week.

    Examples:

        tidings run --week 2024-06-09

        tidings run --week 2024-06-09 --out ./site
    """
    from . import curate, render_week
    from . import run as run_stages
    from .pipeline import StageReport

    st = state(ctx)
    when = week_end_of(st, parse_week(week, st)) if week is not None else None
    summarizer = llm_gateway(st, "summarize", None)
    classifier_llm = llm_gateway(st, "classify", None)
    uses_llm = tuple(task for task, gateway in (("summarize", summarizer), ("classify", classifier_llm)) if gateway)
    from .pipeline import STAGES

    queued = queued_run(st, list(STAGES), no_wait=no_wait, allow_private=allow_private, llm=uses_llm)
    if queued is not None and no_wait:
        err.print("the digest is not written: run `tidings digest` once the queue is done", highlight=False)
        raise typer.Exit(summary_table(queued) if queued else 0)  # the local pages it read, if any
    reports = queued if queued is not None else run_stages(
        st.store, st.config, policy=fetch_policy(st, allow_private),
        llms={"summarize": summarizer, "classify": classifier_llm}, progress=bars(st),
    )
    llm_footer(summarizer)
    llm_footer(classifier_llm)
    if when is None:  # chosen once the stages have run: which weeks have candidates depends on them
        when = parse_week(None, st)
        err.print(f"week ending {when}", highlight=False)
    text = render_week(st.store, when, st.config, save=True)
    assert text is not None  # saving makes the week's draft, so there is always one to render
    if not curate.week_has_entries(st.store, when):
        # An empty digest is never written: say why, and which week the items are in.
        newest = curate.week_of_newest_candidate(st.store, st.config)
        hint = f"; the newest items are in the week ending {newest} (--week {newest})" if newest and newest != when else ""
        err.print(f"nothing for week {when}: no item seen in its 7 days has its text yet{hint}", highlight=False)
        reports.append(StageReport("digest", skipped=1))
        raise typer.Exit(summary_table(reports))
    reports.append(StageReport("digest", done=1))
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
    from . import curate

    st = state(ctx)
    with st.store.session() as session:
        rows = curate.list_items(session, status=status, kind=kind, limit=limit, for_view=as_json)
        if as_json:
            for item in rows:
                # The one item shape every interface derives from (records.ItemView).
                sys.stdout.write(json.dumps(item.view().to_json(), ensure_ascii=False) + "\n")
            return
        from rich.table import Table

        table = Table(show_edge=False)
        for column in ("id", "kind", "status", "section", "title"):
            table.add_column(column)
        for item in rows:
            table.add_row(str(item.id), item.kind, item.status, item.section or "", (item.title or item.url)[:70])
        out.print(table)


@site_app.command("build")
def site_build(
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", help="The directory to write the site into.")],
    title: Annotated[str, typer.Option(help="The site's title.")] = "tidings",
    base_url: Annotated[
        str | None, typer.Option(help="Public URL of the site: feeds and the sitemap then use absolute links.")
    ] = None,
    drafts: Annotated[bool, typer.Option(help="Also publish draft digests.")] = False,
) -> None:
    """Build the static site: digests, section and tag pages, RSS/Atom feeds, search, sitemap.

    The site works from any file server and from disk. An unchanged rebuild rewrites no file.

    Examples:

        tidings site build --out ./public

        tidings site build --out ./public --base-url https://example.org/weekly/
    """
    from . import build_site

    st = state(ctx)
    report = build_site(st.store, st.config, out_dir, title=title, base_url=base_url, include_drafts=drafts)
    err.print(
        f"site: {report.digests} digests, {report.pages} pages, {report.feeds} feeds in {report.out}; "
        f"{report.written} written, {report.unchanged} unchanged, {report.removed} removed",
        highlight=False,
    )


@store_app.command("copy")
def store_copy(
    source: Annotated[str, typer.Option("--from", metavar="PATH|URL", help="The store to copy from.")],
    target: Annotated[str, typer.Option("--to", metavar="PATH|URL", help="The store to copy into (empty).")],
    force: Annotated[bool, typer.Option("--force", help="Replace whatever the target store holds.")] = False,
    batch: Annotated[int, typer.Option(min=1, metavar="N", help="Rows read and written at a time.")] = 500,
) -> None:
    """Copy every row, ids kept, from one store to another: SQLite to PostgreSQL or back.

    The target is written in one transaction (a failed copy leaves it untouched) and must be empty
    unless --force. The search index is rebuilt by the target, not copied.

    Examples:

        tidings store copy --from tidings.db --to postgresql://tidings@db.example/tidings

        tidings store copy --from postgresql://tidings@db.example/tidings --to backup.db
    """
    from .storecopy import copy_stores

    shown: dict[str, int] = {}

    def progress(table: str, done: int, total: int) -> None:
        # One line per table when it is done, and one per ~10,000 rows on the way for big tables.
        if done == total or done - shown.get(table, 0) >= 10_000:
            shown[table] = done
            err.print(f"copy: {table} {done}/{total}", highlight=False)

    report = copy_stores(source, target, force=force, batch=batch, progress=progress)
    err.print(f"copied {report.total} rows in {sum(1 for n in report.rows.values() if n)} tables "
              f"from {report.source} to {report.target}", highlight=False)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the curation web UI (week view, add links, digests, feeds).

    Binding to an address other than 127.0.0.1 / ::1 / localhost requires a token, from
    TIDINGS_TOKEN or web.token in the config; every request must then carry it.

    Examples:

        tidings serve

        TIDINGS_TOKEN=s3cret tidings serve --host 0.0.0.0 --port 8080
    """
    from .web import serve as run_server

    st = state(ctx)
    run_server(st.store, st.config, host=host, port=port)


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON.

    Example:

        tidings --config tidings.toml config show
    """
    st = state(ctx)
    sys.stdout.write(st.config.model_dump_json(indent=2) + "\n")


AllowPrivateFeeds = Annotated[
    bool, typer.Option(help="Allow feeds on private, loopback and link-local addresses (see feeds fetch).")
]


@feeds_app.command("add")
def feeds_add(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(metavar="URL...", help="Feed URLs (http or https).")],
    allow_private: AllowPrivateFeeds = False,
) -> None:
    """Subscribe to feeds. Every URL is checked first, as the web UI checks it: one refused URL
    means none is added (exit 2).

    Example:

        tidings feeds add https://go.dev/blog/feed.atom
    """
    from . import collect

    st = state(ctx)
    refuse_urls(urls, url_policy(st, allow_private=allow_private, allow_files=False), "refused feed URLs")
    for url in urls:
        added = collect.subscribe(st.store, url)
        err.print(f"{'added' if added else 'already subscribed'}: {url}", highlight=False)


@feeds_app.command("import")
def feeds_import(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="OPML files.")],
    allow_private: AllowPrivateFeeds = False,
) -> None:
    """Subscribe to every feed in OPML files (folders kept). Feeds the URL check refuses (other
    schemes, files, private addresses) are listed as failed, and the others subscribed.

    Example:

        tidings feeds import feedly.opml
    """
    from .collect import subscribe_opml, url_refusal
    from .pipeline import StageReport

    st = state(ctx)
    policy = url_policy(st, allow_private=allow_private, allow_files=False)
    report = StageReport("feeds import")
    for file in files:
        if not file.is_file():
            raise UsageError(f"no such file: {file}")
    for file in files:
        subscribe_opml(st.store, file.read_bytes(), str(file), report, check=lambda url: url_refusal(url, policy, resolve=False))
    raise typer.Exit(summary_table([report]))


@feeds_app.command("export")
def feeds_export(ctx: typer.Context) -> None:
    """Write the subscriptions as OPML to stdout.

    Example:

        tidings feeds export > feeds.opml
    """
    from . import collect

    sys.stdout.write(collect.export_feeds(state(ctx).store))


@feeds_app.command("remove")
def feeds_remove(ctx: typer.Context, url: str) -> None:
    """Unsubscribe from a feed.

    Example:

        tidings feeds remove https://go.dev/blog/feed.atom
    """
    from . import collect

    if not collect.remove_feed(state(ctx).store, url):
        raise UsageError(f"not subscribed: {url}")


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """List feeds with last success, last error and item count; dead feeds are marked.

    Example:

        tidings feeds list
    """
    from rich.console import Console
    from rich.table import Table

    from . import collect

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
    from . import collect
    from .sources.urlcheck import FetchPolicy

    st = state(ctx)
    with bar(st, "feeds") as progress:
        report = collect.poll_feeds(
            st.store, FetchPolicy.from_config(st.config.fetch, allow_private=allow_private),
            include_dead=include_dead, progress=progress,
        )
    raise typer.Exit(summary_table([report]))


# --- search, ask, index (tidings.search) ------------------------------------------------------------


def search_filters(
    section: list[str] | None, tag: list[str] | None, author: list[str] | None, kind: list[str] | None,
    since: str | None, until: str | None,
) -> SearchFilters:
    from .search.query import Filters, date_bound

    return Filters(
        authors=author or [], tags=tag or [], sections=section or [], kinds=kind or [],
        since=date_bound(since, end=False) if since else None,
        until=date_bound(until, end=True) if until else None,
    )


def marked(text: str) -> str:
    """Rich markup for a snippet: the ``**matched**`` words in bold, everything else escaped."""
    from rich.markup import escape

    from .search.snippets import MARK_CLOSE, MARK_OPEN

    parts = text.split(MARK_OPEN)
    out = [escape(parts[0])]
    for part in parts[1:]:
        word, _, rest = part.partition(MARK_CLOSE)
        out.append(f"[bold yellow]{escape(word)}[/bold yellow]{escape(rest)}")
    return "".join(out)


SectionOpt = Annotated[list[str] | None, typer.Option("--section", help="Section name or part of it (repeatable).")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Tag; repeated tags must all be present.")]
AuthorOpt = Annotated[list[str] | None, typer.Option("--author", help="Author name or @handle (repeatable).")]
KindOpt = Annotated[list[str] | None, typer.Option("--kind", help="article, post, note or blog (repeatable).")]
SinceOpt = Annotated[str | None, typer.Option(help="From this date: YYYY, YYYY-MM or YYYY-MM-DD.")]
UntilOpt = Annotated[str | None, typer.Option(help="Up to this date, inclusive.")]


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help='Words, "phrases", -exclusions, author:/tag:/section:/kind:/since:/until:.')],
    section: SectionOpt = None, tag: TagOpt = None, author: AuthorOpt = None, kind: KindOpt = None,
    since: SinceOpt = None, until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N results.")] = 10,
    recent: Annotated[bool, typer.Option(help="Boost recent items (search.recency_weight).")] = False,
    hybrid: Annotated[bool, typer.Option(help="Fuse with embeddings when routes.embed is configured.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per result.")] = False,
) -> None:
    """Search the archive: BM25 over Chinese-segmented text with field weights, hybrid with
    embeddings when an embedding model is configured.

    Examples:

        tidings search "Mixtral 路由"

        tidings search '向量数据库 -milvus' --since 2024-01 --limit 5

        tidings search 'author:dotey "Claude 3"' --json | jq .title
    """
    from . import search_archive

    st = state(ctx)
    result = search_archive(
        st.store, query, config=st.config, filters=search_filters(section, tag, author, kind, since, until),
        limit=limit, recent=recent, hybrid=hybrid,
    )
    if as_json:
        for hit in result.hits:
            sys.stdout.write(json.dumps(hit.to_json(), ensure_ascii=False) + "\n")
        return
    if not result.hits:
        err.print("no results", highlight=False)
        return
    for number, hit in enumerate(result.hits, start=1):
        item = hit.item
        meta = " · ".join(x for x in (hit.date, item.section, item.byline, item.kind) if x)
        out.print(f"[bold]{number}. {escape_markup(item.title or item.url)}[/bold]  [dim]{hit.score:.3f}[/dim]", highlight=False)
        out.print(f"   [dim]{escape_markup(meta)}[/dim]  {escape_markup(item.url)}", highlight=False)
        if hit.snippet:
            out.print("   " + marked(hit.snippet), highlight=False)
    err.print(f"{len(result.hits)} result(s), ranked by {result.mode}", highlight=False)


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("ask")
def ask_cmd(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="A question; filters as in search work inline.")],
    section: SectionOpt = None, tag: TagOpt = None, author: AuthorOpt = None, kind: KindOpt = None,
    since: SinceOpt = None, until: UntilOpt = None,
    threshold: Annotated[float | None, typer.Option(help="Refuse below this evidence score (default: calibrated).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="{answer, confidence, evidence, related} as JSON.")] = False,
    use_llm: LLMFlag = None,
) -> None:
    """Answer from the archive with quotes that are checked to occur verbatim in the cited
    items; say so (and list related items) when the archive has no evidence. Questions about
    the archive itself (counts, rankings, series) are answered with SQL over read-only views,
    shown as the evidence ({answer, sql, rows, confidence} with --json); with --llm the model
    routed for ask writes that SQL.

    Examples:

        tidings ask "哪些文章讨论过 RAG 的评估指标？"

        tidings ask "What did Karpathy say about tokenization?" --json

        tidings ask "2024 年每个月各有几期？"
    """
    from . import ask

    st = state(ctx)
    gateway = llm_gateway(st, "ask", use_llm)
    answer = ask(
        st.store, question, config=st.config, filters=search_filters(section, tag, author, kind, since, until),
        threshold=threshold, llm=gateway,
    )
    if as_json:
        sys.stdout.write(json.dumps(answer.to_json(), ensure_ascii=False) + "\n")
        return
    if hasattr(answer, "sql"):
        print_archive_answer(answer)
        return
    out.print(escape_markup(answer.answer), highlight=False)
    out.print(f"[dim]confidence {answer.confidence:.2f}[/dim]", highlight=False)
    for number, c in enumerate(answer.evidence, start=1):
        out.print(f"[{number}] {escape_markup(c.title or c.url)}  [dim]{escape_markup(c.url)}[/dim]", highlight=False)
    if answer.refused and answer.related:
        out.print("related:", highlight=False)
        for r in answer.related:
            out.print(f"  - {escape_markup(r['title'] or r['url'])}  [dim]{escape_markup(r['url'])}[/dim]", highlight=False)


def print_archive_answer(answer: Any) -> None:
    """An archive answer with its evidence: the SQL that ran and the first rows it returned."""
    out.print(escape_markup(answer.answer), highlight=False)
    out.print(f"[dim]confidence {answer.confidence:.2f} ({escape_markup(answer.method)})[/dim]", highlight=False)
    out.print("sql: " + escape_markup(answer.sql), highlight=False, soft_wrap=True)  # whole, to be copied
    for row in answer.rows[:20]:
        out.print("  " + escape_markup(" | ".join("" if v is None else str(v) for v in row)), highlight=False)
    if len(answer.rows) > 20:
        out.print(f"  … {len(answer.rows) - 20} more row(s)", highlight=False)


@app.command("index")
def index_cmd(
    ctx: typer.Context,
    rebuild: Annotated[bool, typer.Option(help="Drop the search index and build it again.")] = False,
    embed: Annotated[bool, typer.Option(help="Also compute missing embeddings (needs routes.embed).")] = False,
) -> None:
    """Bring the search index up to date (it also updates itself before every search).

    Examples:

        tidings index

        tidings index --rebuild --embed
    """
    from .search.hits import embedder_from_config
    from .search.index import index_stats, rebuild_index, refresh_index
    from .search.rank import update_embeddings

    st = state(ctx)
    with bar(st, "index") as progress:
        if rebuild:
            rebuild_index(st.store, st.config, progress=progress)
        else:
            refresh_index(st.store, st.config, progress=progress)
    if embed:
        embedder = embedder_from_config(st.config, st.store)
        if embedder is None:
            raise UsageError("--embed needs an embedding model: set routes.embed in tidings.toml")
        update_embeddings(st.store, embedder, st.config)
    stats = index_stats(st.store)
    err.print(f"indexed {stats['indexed']} item(s), {stats['embeddings']} embedding(s)", highlight=False)


@eval_app.command("search")
def eval_search(
    ctx: typer.Context,
    queries: Annotated[Path, typer.Option("--queries", help="Labelled queries (JSONL).")] = Path("evals/queries.jsonl"),
    split: Annotated[str, typer.Option(help="heldout, calibration or all.")] = "heldout",
    hybrid: Annotated[bool, typer.Option(help="Fuse with embeddings when configured.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object.")] = False,
) -> None:
    """recall@5, recall@10 and MRR of search on labelled queries, beside plain BM25 on both halves.

    Examples:

        tidings eval search --queries evals/natural.jsonl

        tidings eval search --queries evals/queries.jsonl --split all --json
    """
    from .search import evaluate as searcheval

    st = state(ctx)
    if split not in (*searcheval.SPLITS, "all"):
        raise UsageError(f"--split must be heldout, calibration or all, not {split!r}")
    report = searcheval.compare_search(
        st.store, searcheval.load_queries(queries), config=st.config, split=split, hybrid=hybrid
    )
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    rows = [(half, engine, figures) for half, engines in report["halves"].items() for engine, figures in engines.items()]
    # With a model configured, what each way of searching cost: seconds per query and the model's tokens.
    costs = any("tokens" in figures for _, _, figures in rows)
    table = Table("half", "engine", "queries", "recall@5", "recall@10", "MRR", *(("s/query", "tokens") if costs else ()),
                  show_edge=False)
    for half, engine, figures in rows:
        cost = (f"{figures.get('seconds_per_query', 0.0):.3f}", str(figures.get("tokens", ""))) if costs else ()
        table.add_row(half, engine if engine != "bm25" else "plain BM25", str(figures["queries"]),
                      f"{figures['recall@5']:.3f}", f"{figures['recall@10']:.3f}", f"{figures['mrr']:.3f}", *cost)
    out.print(table)
    out.print(
        f"{report['split']}: {report['queries']} queries  recall@5 {report['recall@5']:.3f}  "
        f"recall@10 {report['recall@10']:.3f}  MRR {report['mrr']:.3f}", highlight=False,
    )
    if report["misses"]:
        out.print("missed: " + ", ".join(report["misses"]), highlight=False)


@eval_app.command("ask")
def eval_ask(
    ctx: typer.Context,
    queries: Annotated[
        list[Path] | None, typer.Option("--queries", help="Labelled queries (JSONL); repeat for several files.")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Use this refusal threshold instead of calibrating.")] = None,
    hybrid: Annotated[bool, typer.Option(help="Fuse with embeddings when configured.")] = True,
    archive: Annotated[
        Path, typer.Option("--archive", help="Labelled archive questions (JSONL), answered offline; skipped if absent.")
    ] = Path("evals/archive.jsonl"),
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object.")] = False,
) -> None:
    """Citation-verified rate, refusal rate on unanswerable questions and answer hit rate: the
    refusal threshold is calibrated on the calibration half, the figures are for the held-out half.
    Also the exact-match rate of questions about the archive itself (counts, rankings, series; see
    `tidings eval archive` for the misses and the model's figures).

    Examples:

        tidings eval ask --queries evals/queries.jsonl

        tidings eval ask --queries evals/queries.jsonl --threshold 0.5 --json
    """
    from .search import evaluate as searcheval

    st = state(ctx)
    files = queries or [Path("evals/queries.jsonl"), Path("evals/ask.jsonl")]  # search set + ask-only set
    report = searcheval.evaluate_ask(
        st.store, searcheval.load_query_files(files), config=st.config, threshold=threshold, hybrid=hybrid
    )
    if archive.is_file():
        from .search.archive_eval import evaluate_archive, load_questions
        from .search.archive_sql import ArchiveSQLError

        try:
            found = evaluate_archive(st.store, load_questions(archive), config=st.config, llm=None)
        except ArchiveSQLError as exc:  # a store the archive views do not cover yet (PostgreSQL)
            report["archive_skipped"] = str(exc)
        else:
            report["archive"] = {half: {k: found[half][k] for k in ("questions", "exact_match")}
                                 for half in ("calibration", "heldout")}
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    out.print(f"threshold {report['threshold']} (calibrated: {report['calibrated_threshold']})", highlight=False)
    for name in ("calibration", "heldout"):
        m = report[name]
        out.print(
            f"{name}: {m['questions']} questions  citation-verified {m['citation_verified_rate']}  "
            f"refusal (unanswerable) {m['refusal_rate_unanswerable']}  false refusals {m['false_refusal_rate']}  "
            f"answer hit {m['answer_hit_rate']}", highlight=False,
        )
    if "archive_skipped" in report:
        out.print(f"archive questions: skipped ({report['archive_skipped']})", highlight=False)
    for name, m in report.get("archive", {}).items():
        out.print(f"archive questions, {name}: {m['questions']} questions  exact match {m['exact_match']}",
                  highlight=False)


@eval_app.command("archive")
def eval_archive(
    ctx: typer.Context,
    questions: Annotated[Path, typer.Option("--questions", help="Labelled archive questions (JSONL).")] = Path("evals/archive.jsonl"),
    use_llm: LLMFlag = None,
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object.")] = False,
) -> None:
    """Exact-match rate of archive questions (counts, rankings, series) against answers computed
    independently from the store's tables; offline templates, or the ask model with --llm.

    Examples:

        tidings eval archive

        tidings eval archive --llm --json
    """
    from .search.archive_eval import evaluate_archive, load_questions

    st = state(ctx)
    gateway = llm_gateway(st, "ask", use_llm)
    report = evaluate_archive(st.store, load_questions(questions), config=st.config, llm=gateway)
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    for name in ("calibration", "heldout", "all"):
        m = report[name]
        by_model = (f"  answered by the model {m['answered_by_model']} (exact {m['model_exact_match']} of all)"
                    if report["model"] else "")
        out.print(f"{name}: {m['questions']} questions  exact match {m['exact_match']}{by_model}", highlight=False)
    for miss in report["heldout"]["misses"]:
        out.print(f"missed {miss['id']}: {escape_markup(miss['question'])}", highlight=False)
    llm_footer(gateway)


@eval_app.command("classify")
def eval_classify(
    ctx: typer.Context,
    cutoff: Annotated[
        str, typer.Option(help="Train on digest weeks up to this date, test on the weeks after it.")
    ] = "2024-03-31",
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object.")] = False,
) -> None:
    """Accuracy, macro-F1 and confusion matrix of the section model on a time split, next to the
    keyword rules on the same test items (never a random split: next week is what it is used on).

    Examples:

        tidings eval classify

        tidings eval classify --cutoff 2024-03-31 --json
    """
    from .stages.classify_eval import evaluate_classifier, format_eval

    st = state(ctx)
    try:
        when = date.fromisoformat(cutoff)
    except ValueError as exc:
        raise UsageError(f"--cutoff: expected YYYY-MM-DD, got {cutoff!r}") from exc
    result = evaluate_classifier(st.store, st.config, when)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
        return
    sys.stdout.write(format_eval(result))


@users_app.command("add")
def users_add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The curator's name.")]) -> None:
    """Add a curator and print its token (shown only this once; the store keeps only a hash).

    Examples:

        tidings users add alice
    """
    from .users import add_user

    token = add_user(state(ctx).store, name)
    err.print(f"user {name} added; its token (shown only now; log in with it, or send it as "
              "'Authorization: Bearer …'):", highlight=False, markup=False)
    out.print(token, highlight=False, markup=False, soft_wrap=True)


@users_app.command("list")
def users_list(ctx: typer.Context) -> None:
    """The curators by name, and when each was added.

    Example:

        tidings users list
    """
    from .users import list_users

    for user in list_users(state(ctx).store):
        out.print(f"{user.name}  {user.created_at.isoformat(timespec='seconds')}", highlight=False, markup=False)


@users_app.command("remove")
def users_remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The curator's name.")]) -> None:
    """Remove a curator: its token stops working at once; its edits keep its name.

    Example:

        tidings users remove alice
    """
    from .users import remove_user

    remove_user(state(ctx).store, name)
    out.print(f"user {name} removed", highlight=False, markup=False)


@stories_app.command("show")
def stories_show(ctx: typer.Context, item: Annotated[int, typer.Argument(help="An item id.")]) -> None:
    """The story an item is in: its items, "seen in N sources", the best item and its history.

    Examples:

        tidings stories show 42
    """
    from .curate import items_by_id
    from .stages.stories import story_events, story_of

    st = state(ctx)
    story = story_of(st.store, item)
    if story is None:
        raise UsageError(f"item {item} is in no story yet: run `tidings run` (the stories stage) first")
    out.print(f"story {story.id}: {story.size} item(s), seen in {story.sources_count} source(s), "
              f"best item {story.best_item_id} (chosen by {story.chosen_by})", highlight=False)
    for member in items_by_id(st.store, story.item_ids).values():
        mark = "*" if member.id == story.best_item_id else " "
        title = " ".join((member.title or member.url).split())  # one line per item
        out.print(f" {mark} {member.id}  {member.kind}  {escape_markup(title)}", highlight=False)
    for event in story_events(st.store, story.id):
        out.print(f"   {event['at'][:19]}  {event['action']} by {event['by']}  item {event['item_id']}", highlight=False)


@stories_app.command("split")
def stories_split(ctx: typer.Context, item: Annotated[int, typer.Argument(help="The item to take out.")]) -> None:
    """Take an item out of its story into a story of its own; later runs never put it back.

    Examples:

        tidings stories split 42
    """
    from .stages.stories import split

    out.print(f"item {item} is now story {split(state(ctx).store, item, by='curator')}", highlight=False)


@stories_app.command("merge")
def stories_merge(
    ctx: typer.Context,
    story: Annotated[int, typer.Argument(help="The story that stays.")],
    other: Annotated[int, typer.Argument(help="The story merged into it (removed).")],
) -> None:
    """Merge two stories (ids from `tidings stories show ITEM`); later runs never split them.

    Examples:

        tidings stories merge 7 12
    """
    from .stages.stories import merge

    out.print(f"story {other} merged into story {merge(state(ctx).store, story, other, by='curator')}",
              highlight=False)


@stories_app.command("best")
def stories_best(
    ctx: typer.Context,
    story: Annotated[int, typer.Argument(help="The story.")],
    item: Annotated[int, typer.Argument(help="The item a digest shows for it.")],
) -> None:
    """Choose the item a digest shows for a story; later runs keep the choice.

    Examples:

        tidings stories best 7 42
    """
    from .stages.stories import choose_best

    choose_best(state(ctx).store, story, item, by="curator")
    out.print(f"story {story} is shown as item {item}", highlight=False)


@eval_app.command("stories")
def eval_stories(
    ctx: typer.Context,
    pairs: Annotated[Path, typer.Option("--pairs", help="Labelled item pairs (JSONL).")] = Path("evals/stories.jsonl"),
    sweep: Annotated[bool, typer.Option(help="Figures of the calibration half over the threshold grid.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The figures as one JSON object.")] = False,
) -> None:
    """Precision and recall of story grouping on labelled pairs of the store's items: calibration
    and held-out halves (thresholds were chosen on calibration only).

    Examples:

        tidings eval stories

        tidings eval stories --sweep --json
    """
    from .stages import stories_eval

    st = state(ctx)
    labelled = stories_eval.load_pairs(pairs)
    if sweep:
        rows = stories_eval.sweep(st.store, labelled)
        if as_json:
            sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
            return
        for row in rows:
            out.print(f"{row['thresholds']}  precision {row['precision']}  recall {row['recall']}", highlight=False)
        return
    report = stories_eval.evaluate_stories(st.store, labelled)
    if as_json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        return
    for name in stories_eval.SPLITS:
        m = report[name]
        out.print(
            f"{name}: {m['pairs']} pairs  precision {m['precision']}  recall {m['recall']}  "
            f"(tp {m['true_positive']} fp {m['false_positive']} fn {m['false_negative']} tn {m['true_negative']})",
            highlight=False,
        )
        for wrong in m["wrong"]:
            out.print(f"  {wrong}", highlight=False)
    if report["unresolved"]:
        out.print(f"not in this store: {', '.join(report['unresolved'])}", highlight=False)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs at a time in this process.")] = 2,
    stages: Annotated[str, typer.Option(help="Comma-separated stages this worker takes (default: all).")] = "",
    heartbeat: Annotated[float, typer.Option(min=0.1, help="Seconds between heartbeats; a worker silent for "
                                             "three of them is taken for dead and its jobs are queued again.")] = 10.0,
) -> None:
    """Run the queued stage jobs of a PostgreSQL store, on any machine that reaches the database.

    Examples:

        tidings --db postgresql://tidings@db/tidings worker --concurrency 4

        tidings --db postgresql://tidings@db/tidings worker --stages fetch
    """
    from . import queue

    st = state(ctx)
    from .pipeline import STAGES

    wanted = [name.strip() for name in stages.split(",") if name.strip()] or list(STAGES)
    err.print(f"worker: {', '.join(wanted)}, {concurrency} at a time (Ctrl-C stops after the jobs in hand)",
              highlight=False)
    queue.run_worker(st.store, st.config, stages=wanted, concurrency=concurrency, heartbeat=heartbeat)


@queue_app.callback(invoke_without_command=True)
def queue_show(ctx: typer.Context) -> None:
    """Jobs per stage: pending (todo), running (doing), done, failed, and how many were retried.

    Examples:

        tidings queue

        tidings queue retry
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from . import queue
    from .pipeline import STAGES

    st = state(ctx)
    _need_queue(st)
    shown = queue.status(st.store)
    names = {"todo": "pending", "doing": "running", "succeeded": "done", "failed": "failed"}
    table = Table(title="queue", show_edge=False)
    for column in ("stage", *names.values()):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in [s for s in STAGES if s in shown.by_stage]:
        table.add_row(stage, *(str(shown.by_stage[stage].get(status, 0)) for status in names))
    out.print(table)
    out.print(f"retried: {shown.retried}", highlight=False)
    for job_id, stage, item_id, attempts in shown.failed_jobs:
        out.print(f"  failed job {job_id}: {stage} item {item_id} after {attempts} attempt(s)", highlight=False)


@queue_app.command("retry")
def queue_retry(ctx: typer.Context) -> None:
    """Queue the failed jobs again.

    Example:

        tidings --db postgresql://tidings@db/tidings queue retry
    """
    from . import queue

    st = state(ctx)
    _need_queue(st)
    err.print(f"queued again: {queue.retry_failed(st.store)} failed job(s)", highlight=False)


def _need_queue(st: State) -> None:
    if not st.db.startswith("postgres"):
        raise UsageError("the job queue lives in a PostgreSQL store (--db postgresql://…); "
                         "a SQLite store runs its stages in-process")


def app_for(argv: list[str]) -> typer.Typer:
    """The app that runs ``argv``: when it names one command or group of :data:`app`, a copy of
    ``app`` holding only that one. Typer turns the signature of every command it holds into click
    parameters on every run (18 ms for them all); a command needs its own and the root options.
    The root's help, shell completion and a name that is no command (its "did you mean") get the
    whole app."""
    if os.environ.get("_TIDINGS_COMPLETE"):
        return app
    name = command_name(argv, root_value_options())
    commands = [info for info in app.registered_commands if command_info_name(info) == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app
    return app_holding(commands, groups)


def app_holding(commands: list[Any], groups: list[Any]) -> typer.Typer:
    """A copy of :data:`app` (its root options and settings) with only these commands and groups."""
    from copy import copy

    pruned = copy(app)
    pruned.registered_commands = commands
    pruned.registered_groups = groups
    return pruned


def command_info_name(info: Any) -> str:
    from typer.main import get_command_name

    return info.name or get_command_name(info.callback.__name__)


def root_value_options() -> set[str]:
    """The root options that take a value (``--db PATH``), from the root's own click command."""
    from typer.main import get_command

    root = get_command(app_holding([], []))
    return {name for param in root.params if isinstance(param, TyperOption) and not param.is_flag
            and not param.count for name in param.opts}


# The root options after which argv asks no command of anything: the root's help and completion.
ROOT_ONLY_OPTIONS = {"-h", "--help", "--install-completion", "--show-completion"}


def command_name(argv: list[str], value_options: set[str]) -> str | None:
    """The command ``argv`` names (its first argument that is not a root option or an option's
    value), as click reads it; None when a root-only option comes first or there is none."""
    takes_value = False
    for index, token in enumerate(argv):
        if takes_value:
            takes_value = False
        elif token == "--":
            return argv[index + 1] if index + 1 < len(argv) else None
        elif token.startswith("--"):
            option, has_value, _ = token.partition("=")
            if option in ROOT_ONLY_OPTIONS:
                return None
            takes_value = option in value_options and not has_value
        elif token.startswith("-") and token != "-":  # short options, perhaps several: -vq, -vvh
            for position, letter in enumerate(token[1:], start=2):
                if f"-{letter}" in ROOT_ONLY_OPTIONS:
                    return None
                if f"-{letter}" in value_options:
                    takes_value = position == len(token)  # else the rest of the token is the value
                    break
        else:
            return token
    return None


def run_cli(argv: list[str] | None = None) -> int:
    """Run one command; our errors become a message and an exit code, never a traceback."""
    # Typer vendors its own click: its exception classes are the ones raised here.
    from typer._click import exceptions as click_errors

    try:
        command_app = app_for(sys.argv[1:] if argv is None else argv)
        code = command_app(args=argv, prog_name="tidings", standalone_mode=False)
    except TidingsError as exc:
        from rich.markup import escape  # messages name config keys like [models.NAME]: not markup

        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        errors.print("aborted")
        return 130
    except click_errors.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click_errors.UsageError) else exc.exit_code
    except Exception as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        what = escape_markup(f"{type(exc).__name__}: {exc}")
        errors.print(f"[red]internal error:[/red] {what} (run with -vv for the traceback)", highlight=False)
        return 3
    return code if isinstance(code, int) else 0


# Modules that a library module the CLI loads imports at its top for a feature no command uses
# there, with the names it takes from them (none: ``import module``); see DeferringFinder.
# Together they cost more than the rest of ``tidings --help`` or ``config show``:
DEFERRED_IMPORTS: dict[str, dict[str, tuple[str, ...]]] = {
    # typer's rich help: Markdown renders rich_markup_mode="markdown" (ours is "rich"), Traceback a
    # crash under -vv; with markdown-it and pygments they are 40 ms of every `--help`.
    "typer.rich_utils": {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)},
    # pydantic's plugin lookup calls entry_points only when plugins are on (main turns them off):
    # importlib.metadata is 12 ms of every command that builds a model or parses an option.
    "pydantic.plugin._loader": {"importlib.metadata": ("entry_points",)},
    # pydantic.types imports secrets and never uses it; with hmac and OpenSSL's hashes that is 5 ms.
    "pydantic.types": {"secrets": ()},
}


class DeferredModule(types.ModuleType):
    """What a deferred module's importer finds while it runs: the stand-ins of the names it takes
    (and nothing else, so an unlisted name fails loudly). Once the importer has run, any other
    attribute read through it is the real module's."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            raise AttributeError(f"{self.__name__}.{name} is not among the names deferred")
        return getattr(importlib.import_module(self.__name__), name)


class Deferred(type):
    """The type of a stand-in for a name a module imports: calling the stand-in, or reading an
    attribute of it, imports the real module and goes to the real object. A stand-in is a class so
    that annotations such as ``Markdown | Text`` still evaluate."""

    def real(cls) -> Any:
        module = importlib.import_module(cls.__module__)
        if isinstance(module, DeferredModule):  # its importer uses it at once: it cannot be deferred
            raise ImportError(f"{cls.__module__}.{cls.__name__} is used while its importer runs")
        return getattr(module, cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):  # protocol look-ups (copy, typing, inspect) must not import anything
            raise AttributeError(name)
        return getattr(cls.real(), name)


class DeferringLoader:
    """Runs a module's loader while ``sys.modules`` holds stand-in modules for the imports in
    ``deferred`` (those not imported already), then takes the stand-ins out again: the module
    keeps its stand-in names, and any later import of those modules is the real one."""

    def __init__(self, loader: Any, deferred: dict[str, tuple[str, ...]]) -> None:
        self.loader = loader
        self.deferred = deferred

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        stand_ins: dict[str, Any] = {}
        for name, attributes in self.deferred.items():
            if name not in sys.modules:
                stand_in = stand_ins[name] = DeferredModule(name)
                for attribute in attributes:
                    setattr(stand_in, attribute, Deferred(attribute, (), {"__module__": name}))
        sys.modules.update(stand_ins)
        try:
            self.loader.exec_module(module)
        except (ImportError, AttributeError):
            # A release of the library that uses more of a deferred module than the table lists:
            # import it as it is written, at the old cost, rather than fail every command.
            self._remove(stand_ins)
            self.loader.exec_module(module)
        finally:
            self._remove(stand_ins)

    @staticmethod
    def _remove(stand_ins: dict[str, Any]) -> None:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename...: tracebacks show the real file
        return getattr(self.loader, name)


class DeferringFinder:
    """A ``sys.meta_path`` finder that imports each module of ``table`` (by default
    :data:`DEFERRED_IMPORTS`) with its imports there deferred to their first use; it finds
    nothing else."""

    def __init__(self, table: dict[str, dict[str, tuple[str, ...]]] | None = None) -> None:
        self.table = DEFERRED_IMPORTS if table is None else table

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        deferred = self.table.get(fullname)
        if deferred is None:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = DeferringLoader(spec.loader, deferred)
        return spec


def main() -> None:
    # pydantic looks up third-party plugins (entry points of every installed distribution) before it
    # builds the first model: 6-14 ms of every command's start, for plugins tidings never uses.
    # PYDANTIC_DISABLE_PLUGINS="" in the environment turns them back on.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    sys.meta_path.insert(0, DeferringFinder())
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
