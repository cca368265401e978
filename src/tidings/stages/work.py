"""The CPU work of the stages on plain data, and the process pool it runs in.

Extraction, fingerprints, extractive summaries and classification are pure functions of an item's
bytes or text. They run here, in worker processes over all cores, on plain values (bytes, strings,
numbers, small dataclasses): no ORM object, session or connection ever crosses a process boundary.
The parent keeps the store and commits each result as it comes back, so what a killed run loses is
only the work in flight, and a re-run picks it up again.

Workers are started by a fork server (or spawned where there is none), never forked from the
parent: the parent runs fetch threads and holds sqlite connections, and a fork copies a lock held
by another thread as locked forever. The fork server imports this module once, so each worker
starts with trafilatura, datasketch and numpy already loaded.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ..errors import EXTRACTOR_LOGGERS, ExtractError
from ..textutil import add_user_words, nfkc, user_words
from . import dedupe, summarize

K = TypeVar("K")
R = TypeVar("R")

MIN_POOL_ITEMS = 16
"""Below this many items a stage runs in the calling process: starting workers costs more than the
work (a one-link add from the web, most tests)."""

CHUNK = 16
"""Items per task for the text stages: one round trip per chunk, not per item, and a chunk is also
the unit the parent commits."""


def default_workers() -> int:
    return os.cpu_count() or 1


# --- the work, on plain data -------------------------------------------------------------------


@dataclass(frozen=True)
class Extraction:
    """What extracting one page gives the parent to commit: the article, or why there is none."""

    text: str | None = None
    title: str | None = None
    title_derived: bool = False
    author: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    content_hash: str | None = None
    fingerprint: bytes | None = None
    error_reason: str | None = None
    """Set when the page holds no article (``no_article``, ``empty``, ``binary`` …)."""
    error: str | None = None
    """The extractor's message for it."""


def extract_page(content: bytes, content_type: str | None, url: str) -> Extraction:
    """Extract one fetched page, and fingerprint its text while it is at hand (the dedupe stage then
    has nothing left to compute for it)."""
    from . import extract  # trafilatura is heavy; commands that never extract don't pay for it

    try:
        page = extract.extract(content, url=url, content_type=content_type)
        if not summarize.has_prose(page.text):
            # A bare code listing has nothing for a reader to read or a summary to say: set it aside
            # with its reason, as a home page is, rather than publish a "summary" of markup.
            raise extract.NoArticleError(url, "only code, markup or navigation: no prose", title=page.title)
    except ExtractError as exc:
        # The message without the "url: " prefix ExtractError adds: the parent raises it anew.
        message = str(exc).removeprefix(f"{exc.url}: ")
        return Extraction(title=getattr(exc, "title", None), error_reason=exc.reason, error=message)
    # The hash and the fingerprint both start from the text's NFKC form; NFKC of an NFKC text is
    # itself (and quick to check), so one normalisation serves both.
    normal = nfkc(page.text)
    return Extraction(
        text=page.text,
        title=page.title,
        title_derived=bool(getattr(page, "title_derived", False)),
        author=page.author,
        published_at=page.published_at,
        language=page.language,
        content_hash=dedupe.content_hash(normal),
        fingerprint=dedupe.fingerprint_bytes(normal, nfkc=True),
    )


def fingerprint_texts(texts: Sequence[str]) -> list[bytes | None]:
    """Stored fingerprints of ``texts`` (None for those too short to have one)."""
    return [dedupe.fingerprint_bytes(text) for text in texts]


def summarize_texts(
    pairs: Sequence[tuple[str, str | None]], min_chars: int, max_chars: int, english_sentences: int
) -> list[str]:
    """Extractive summaries of ``(text, title)`` pairs ("" where a text has nothing to summarize)."""
    return [
        summarize.summarize(
            text, title=title, min_chars=min_chars, max_chars=max_chars, english_sentences=english_sentences
        )
        for text, title in pairs
    ]


def classify_docs(classifier: Any, docs: Sequence[Any]) -> list[Any]:
    """Predictions for ``docs`` (:class:`tidings.stages.classify.Doc`), vectorised when the classifier can."""
    predict_many = getattr(classifier, "predict_many", None)
    if predict_many is not None:
        return list(predict_many(docs))
    return [classifier.predict(d.title, d.summary, d.text, d.url) for d in docs]


# --- the pool ----------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_key: tuple[int, tuple[str, ...]] | None = None


def _init_worker(words: Sequence[str], parent: int, log_levels: dict[str, int] | None = None) -> None:
    """Runs once in each worker: the parent's user dictionary, a watch on the parent, and one BLAS
    thread per worker (the workers already fill the cores; BLAS threads on top made the small
    similarity matrices of TextRank several times slower by contending for them)."""
    add_user_words(words)
    for name, level in (log_levels or {}).items():
        logging.getLogger(name).setLevel(level)
    threading.Thread(target=_exit_with, args=(parent,), name="tidings-parent-watch", daemon=True).start()
    _one_blas_thread()  # the limit applies when made, and a worker keeps it for its life


def _one_blas_thread() -> AbstractContextManager[object]:
    """One BLAS thread from now until the returned context exits (a no-op without threadpoolctl,
    which comes with scikit-learn; BLAS then keeps its default)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1)


def _exit_with(parent: int) -> None:
    """End this worker when the parent is gone. A parent killed with SIGKILL never shuts its pool
    down, and idle workers (and the fork server they keep alive) would otherwise wait forever."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(0)


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Loaded once in the fork server, inherited by every worker it forks.
        ctx.set_forkserver_preload([__name__, "tidings.stages.extract", "datasketch"])
        return ctx
    return multiprocessing.get_context("spawn")


def get_pool(workers: int) -> ProcessPoolExecutor | None:
    """The shared pool of ``workers`` processes, or None for ``workers <= 1`` (run in-process).

    One pool serves every stage of the process, so a run pays for starting workers once. It is
    remade when the size or the user dictionary changed, or when a worker died (a broken pool)."""
    global _pool, _pool_key
    if workers <= 1:
        return None
    key = (workers, tuple(user_words()))
    with _pool_lock:
        broken = _pool is not None and getattr(_pool, "_broken", False)
        if _pool is None or _pool_key != key or broken:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            _pool = ProcessPoolExecutor(
                workers, mp_context=_context(), initializer=_init_worker,
                initargs=(list(key[1]), os.getpid(), {n: logging.getLogger(n).level for n in EXTRACTOR_LOGGERS})
            )
            _pool_key = key
        return _pool


def shutdown_pool() -> None:
    global _pool, _pool_key
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
        _pool, _pool_key = None, None


atexit.register(shutdown_pool)


def pool_for(workers: int | None, items: int) -> ProcessPoolExecutor | None:
    """The pool to use for ``items`` items of work, or None to run them in the calling process."""
    size = default_workers() if workers is None else workers
    return get_pool(min(size, default_workers() * 4)) if items >= MIN_POOL_ITEMS else None


def picklable(value: object) -> bool:
    """Whether ``value`` can be sent to a worker (a classifier a caller built may hold a lambda)."""
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 - pickling fails with many exception types; any means "no"
        return False
    return True


PAGE_BATCH = 8
"""Pages per task once every worker has work queued. A task costs the parent about half a
millisecond of pickling and bookkeeping, as much as a sixth of a page's extraction; while the
workers are busy anyway, pages that arrive wait for the next free slot together, in one task."""

_Outcome = tuple[list[Any], BaseException | None]


def _run_batch(fn: Callable[..., Any], batch: Sequence[tuple[Any, ...]]) -> _Outcome:
    """``fn`` on each args of ``batch``, in a worker: the results, and the error that stopped it, if
    one did (the parent yields the results before it, then raises it, as if run one by one)."""
    results: list[Any] = []
    for args in batch:
        try:
            results.append(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed back to be raised in the parent at its job
            return results, exc
    return results, None


def _finished(inflight: dict[Future[_Outcome], list[K]], block: bool) -> Iterator[tuple[K, Any]]:
    """The results of the tasks that are done (waiting for one if ``block``), job by job."""
    done = [f for f in inflight if f.done()]
    if block and not done:
        done = list(wait(inflight, return_when=FIRST_COMPLETED)[0])
    for future in done:
        keys = inflight.pop(future)
        results, error = future.result()
        yield from zip(keys, results, strict=False)  # shorter when an error stopped the batch
        if error is not None:
            raise error


def run_jobs(
    fn: Callable[..., R],
    jobs: Iterable[tuple[K, tuple[Any, ...] | None]],
    pool: ProcessPoolExecutor | None,
) -> Iterator[tuple[K, R | None]]:
    """``(key, fn(*args))`` for each job, as results come in; a job whose args are None yields
    ``(key, None)`` without running anything (a failed fetch has nothing to extract).

    Without a pool each job runs here, in order. With one, at most two tasks per worker are in
    flight: ``jobs`` may be a stream (pages as they are fetched), and memory stays bounded. A job
    goes out at once while a slot is free; while none is, :func:`extract_page` jobs that come in are
    held and sent together (up to :data:`PAGE_BATCH`). Other stages' jobs are chunks already."""
    if pool is None:
        # One BLAS thread here too: TextRank's matrices are small, and BLAS threads fighting over
        # the cores made an in-process summary several times slower than a worker's.
        with _one_blas_thread():
            for key, args in jobs:
                yield key, (fn(*args) if args is not None else None)
        return
    window = 2 * pool._max_workers  # noqa: SLF001 - the executor does not expose its size otherwise
    most = PAGE_BATCH if fn is extract_page else 1
    inflight: dict[Future[_Outcome], list[K]] = {}
    keys: list[K] = []
    batch: list[tuple[Any, ...]] = []
    try:
        for key, args in jobs:
            if args is None:
                yield key, None
                continue
            keys.append(key)
            batch.append(args)
            yield from _finished(inflight, block=False)
            if len(inflight) < window or len(batch) >= most:
                while len(inflight) >= window:
                    yield from _finished(inflight, block=True)
                inflight[pool.submit(_run_batch, fn, batch)] = keys
                keys, batch = [], []
        if batch:
            while len(inflight) >= window:
                yield from _finished(inflight, block=True)
            inflight[pool.submit(_run_batch, fn, batch)] = keys
        while inflight:
            yield from _finished(inflight, block=True)
    finally:
        for future in inflight:
            future.cancel()  # the consumer stopped early: don't leave queued work behind


def chunks(values: Sequence[K], size: int = CHUNK) -> Iterator[Sequence[K]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
