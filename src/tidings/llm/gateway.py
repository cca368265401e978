"""The LLM layer's plumbing: providers behind one narrow protocol, and one gateway that every task
calls through.

* :class:`Provider` is all a model must offer: ``complete(messages, max_tokens, temperature,
  json_schema) -> Completion`` (and optionally ``embed``). Two implementations: any
  OpenAI-compatible endpoint through the official ``openai`` SDK, and a GGUF file in-process
  through llama-cpp-python (the ``tidings[local]`` extra, imported only when configured).
* :class:`LLM` (the gateway) adds what every call needs, in one place: the ``llm_calls`` cache
  (a re-run over unchanged input makes zero calls), retries with exponential backoff and jitter on
  429 / 5xx / timeouts (honouring ``Retry-After``; 400, 401 and context-length errors are never
  retried), a per-model concurrency limit, the token budget, and accounting of tokens and time even
  when the answer later turns out to be unusable.

The tasks themselves (prompts, validation, fallbacks) live in :mod:`tidings.llm.tasks`.
"""

from __future__ import annotations

import atexit
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from ..config import Config, ModelConfig
from ..errors import BudgetExceeded, ConfigError, LLMError, LLMTimeout
from ..store import LLMCall, Store
from ..textutil import CJK_CHAR_RE

__all__ = [
    "LLM",
    "PROVIDERS",
    "Answer",
    "Budget",
    "Completion",
    "LlamaCppProvider",
    "Message",
    "OpenAIProvider",
    "Provider",
    "Route",
    "UsageRow",
    "check_model",
    "estimate_tokens",
    "make_provider",
    "usage_rows",
]

log = logging.getLogger(__name__)

Message = dict[str, str]
"""``{"role": "system" | "user" | "assistant", "content": "…"}``"""


@dataclass
class Completion:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    """As the server reports them; 0 when it reports nothing (the gateway then uses its estimate)."""


@runtime_checkable
class Provider(Protocol):
    """One model. ``embed(texts) -> list[list[float]]`` is optional."""

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion: ...


# --- OpenAI-compatible endpoints -----------------------------------------------------------


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date) or OpenAI's ``retry-after-ms``."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too many tokens", "context window",
                  "exceeds the context", "n_ctx")


def _translate_openai_error(name: str, exc: Exception) -> LLMError:
    """The SDK's exceptions as ours, each marked transient (retry) or not, fatal (stop) or not."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(f"{name}: no answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(f"{name}: cannot connect: {exc}", reason="connect", transient=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = str(getattr(exc, "message", "") or exc)
        headers = exc.response.headers if exc.response is not None else None
        if status == 429:
            return LLMError(f"{name}: rate limited (429)", reason="http_429", transient=True,
                            retry_after=_retry_after(headers))
        if status >= 500 or status == 408:
            return LLMError(f"{name}: server error {status}: {message[:200]}", reason=f"http_{status}",
                            transient=True, retry_after=_retry_after(headers))
        if any(hint in message.lower() for hint in _CONTEXT_HINTS):
            return LLMError(f"{name}: the input is longer than the model's context: {message[:200]}",
                            reason="context_length")
        if status in (401, 403):
            return LLMError(f"{name}: the endpoint refused the API key ({status}): {message[:200]}",
                            reason=f"http_{status}", fatal=True)
        if status == 404:
            return LLMError(f"{name}: not found (404), check base_url and model: {message[:200]}",
                            reason="http_404", fatal=True)
        return LLMError(f"{name}: request rejected ({status}): {message[:200]}", reason=f"http_{status}")
    return LLMError(f"{name}: {type(exc).__name__}: {exc}")


def _response_format(mode: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or mode == "off":
        return None
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    if mode == "grammar":
        # llama.cpp (server and in-process) turns the schema into a grammar: the output must parse.
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


class OpenAIProvider:
    """Any OpenAI-compatible chat endpoint through the official SDK.

    Our own ``httpx.Client`` carries explicit connect/read timeouts; the SDK's own retries are off
    because the gateway retries (with our backoff, Retry-After handling and accounting)."""

    def __init__(self, name: str, cfg: ModelConfig) -> None:
        try:
            import httpx
            import openai
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ConfigError("the 'openai' package is missing: pip install openai") from exc
        self.name = name
        self.cfg = cfg
        key = "not-needed"  # local servers (Ollama, llama.cpp, vLLM) take any key; the SDK wants one
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise ConfigError(
                    f"models.{name}: the environment variable {cfg.api_key_env} (api_key_env) is not set"
                )
        timeout = httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout)
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        self._client = openai.OpenAI(
            api_key=key,
            base_url=cfg.base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=dict(cfg.headers) or None,
            http_client=self._http,
        )

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        import openai

        kwargs: dict[str, Any] = {}
        response_format = _response_format(self.cfg.json_mode, json_schema)
        if response_format is not None:
            kwargs["response_format"] = response_format
        try:
            response = self._client.chat.completions.create(
                model=self.cfg.model,
                messages=list(messages),  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                **kwargs,
            )
        except openai.OpenAIError as exc:
            raise _translate_openai_error(self.name, exc) from exc
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        usage = response.usage
        return Completion(
            text=text,
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        try:
            response = self._client.embeddings.create(model=self.cfg.model, input=list(texts))
        except openai.OpenAIError as exc:
            raise _translate_openai_error(self.name, exc) from exc
        return [list(row.embedding) for row in sorted(response.data, key=lambda r: r.index)]

    def close(self) -> None:
        self._http.close()


# --- in-process GGUF through llama-cpp-python ------------------------------------------------

class _LoadedModel:
    """A model loaded once per (file, context, mode) per process, with the one lock its llama.cpp
    context needs (it is not thread-safe, and two configured names may share one file) and a
    deadline that llama.cpp itself checks: its abort callback runs between the steps of every
    decode, so a timeout also stops a long prompt being processed, not only the generation. The
    callback takes the GIL on every graph node: free when nothing else runs Python, but with another
    busy Python thread a 650-token prompt took 10.3 s instead of 7.5 s (measured here, 2 cores)."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp import llama_cpp

        self.llama = llama
        self.lock = threading.Lock()
        self.deadline = math.inf
        # Kept on the instance: llama.cpp holds only a C pointer to it.
        self._abort = llama_cpp.ggml_abort_callback(self._past_deadline)
        llama_cpp.llama_set_abort_callback(llama._ctx.ctx, self._abort, None)

    def _past_deadline(self, _data: Any) -> bool:
        return time.monotonic() > self.deadline

    def close(self) -> None:
        self.llama.close()


_LOADED: dict[tuple[str, int, bool], _LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_loaded() -> None:
    """Free loaded models while the interpreter still works: left to ``__del__`` at shutdown,
    llama-cpp-python fails noisily on already torn-down module globals."""
    with _LOAD_LOCK:
        for model in _LOADED.values():
            model.close()
        _LOADED.clear()


def _load_llama(path: str, n_ctx: int, n_threads: int | None, embedding: bool = False) -> _LoadedModel:
    """One loaded model per (file, context, mode) per process: loading costs seconds and memory."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ConfigError(
            "provider 'llamacpp' needs llama-cpp-python: pip install 'tidings[local]'"
        ) from exc
    key = (path, n_ctx, embedding)
    with _LOAD_LOCK:
        if key not in _LOADED:
            if not Path(path).is_file():
                raise ConfigError(f"model_path: no such GGUF file: {path}")
            _LOADED[key] = _LoadedModel(
                Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, embedding=embedding, verbose=False)
            )
        return _LOADED[key]


class LlamaCppProvider:
    """A GGUF model run in this process. Calls on one loaded model are serialized; the timeout
    covers the whole call, prompt processing included (llama.cpp's abort callback)."""

    def __init__(self, name: str, cfg: ModelConfig) -> None:
        self.name = name
        self.cfg = cfg
        assert cfg.model_path is not None  # the config validator guarantees it
        self.path = str(Path(cfg.model_path).expanduser())
        self._model = _load_llama(self.path, cfg.n_ctx, cfg.n_threads)

    def _timed_out(self) -> LLMTimeout:
        return LLMTimeout(f"{self.name}: no answer within {self.cfg.timeout:g}s")

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        temperature: float,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        kwargs: dict[str, Any] = {}
        if json_schema is not None and self.cfg.json_mode != "off":
            # In-process, the schema always becomes a grammar: there is no server to disagree.
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        parts: list[str] = []
        tokens_out = 0
        model = self._model
        with model.lock:
            model.deadline = time.monotonic() + self.cfg.timeout
            try:
                # Streamed, so that a generation past the deadline stops at the next token too.
                stream = model.llama.create_chat_completion(
                    messages=list(messages), max_tokens=max_tokens, temperature=temperature, stream=True, **kwargs
                )
                for chunk in stream:
                    delta = chunk["choices"][0].get("delta") or {}
                    if delta.get("content"):
                        parts.append(delta["content"])
                        tokens_out += 1
                    if time.monotonic() > model.deadline:
                        stream.close()
                        raise self._timed_out()
            except RuntimeError as exc:
                # "llama_decode returned 2": the abort callback stopped it at the deadline. The next
                # call drops the half-processed prompt from the cache (llama-cpp-python trims the KV
                # cache to the tokens it knows were evaluated).
                if time.monotonic() > model.deadline:
                    raise self._timed_out() from exc
                raise LLMError(f"{self.name}: {exc}") from exc
            except ValueError as exc:  # llama-cpp-python raises ValueError for a prompt beyond n_ctx
                if "context" in str(exc).lower() or "token" in str(exc).lower():
                    raise LLMError(f"{self.name}: {exc}", reason="context_length") from exc
                raise LLMError(f"{self.name}: {exc}") from exc
            finally:
                model.deadline = math.inf
            # The context now holds the prompt and the answer: the runtime's own token count.
            tokens_in = max(0, int(model.llama.n_tokens) - tokens_out)
        return Completion("".join(parts), tokens_in, tokens_out)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = _load_llama(self.path, self.cfg.n_ctx, self.cfg.n_threads, embedding=True)
        with model.lock:
            model.deadline = time.monotonic() + self.cfg.timeout
            try:
                result = model.llama.create_embedding(list(texts))
            except RuntimeError as exc:
                if time.monotonic() > model.deadline:
                    raise self._timed_out() from exc
                raise LLMError(f"{self.name}: {exc}") from exc
            finally:
                model.deadline = math.inf
        return [list(row["embedding"]) for row in result["data"]]


ProviderFactory = Callable[[str, ModelConfig], Provider]
PROVIDERS: dict[str, ProviderFactory] = {"openai": OpenAIProvider, "llamacpp": LlamaCppProvider}


def make_provider(name: str, cfg: ModelConfig) -> Provider:
    try:
        factory = PROVIDERS[cfg.provider]
    except KeyError as exc:
        raise ConfigError(f"models.{name}.provider: unknown provider {cfg.provider!r}") from exc
    return factory(name, cfg)


def model_id(cfg: ModelConfig) -> str:
    """What the ledger calls a model: its id, or the GGUF file's stem."""
    if cfg.model:
        return cfg.model
    return Path(cfg.model_path or "local").stem


# --- tokens and the budget -----------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper-ish estimate: 1.5 tokens per CJK character (English-centric
    vocabularies split Han characters), one per 3 other characters. No tokenizer here downloads
    anything; the gateway corrects the estimate with what servers report."""
    cjk = len(CJK_CHAR_RE.findall(text))
    return math.ceil(1.5 * cjk + (len(text) - cjk) / 3)


def estimate_messages(messages: Sequence[Message]) -> int:
    return sum(estimate_tokens(m.get("content", "")) + 4 for m in messages) + 3


class Budget:
    """A token allowance for one run. ``reserve`` an estimate before a call (raises
    :class:`BudgetExceeded` if it would not fit, and from then on every call is refused),
    ``settle`` it with the real usage after."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self._reserved = 0
        self.exceeded: BudgetExceeded | None = None
        self._lock = threading.Lock()

    def reserve(self, estimate: int) -> None:
        if self.limit is None:
            return
        with self._lock:
            if self.exceeded is not None:
                raise self.exceeded
            if self.used + self._reserved + estimate > self.limit:
                self.exceeded = BudgetExceeded(self.limit, self.used + self._reserved, estimate)
                raise self.exceeded
            self._reserved += estimate

    def settle(self, estimate: int, actual: int) -> None:
        with self._lock:
            if self.limit is not None:
                self._reserved -= estimate
            self.used += actual

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


class SharedBudget(Budget):
    """One run's allowance held in the store's ``llm_budgets`` row (PostgreSQL, migration 0008), so
    the queue's workers on every machine spend one budget together: a reservation is one atomic
    ``UPDATE … WHERE used + reserved + estimate <= limit``, and once one worker is refused every
    worker is (``exceeded``), as :class:`Budget` does in one process."""

    def __init__(self, store: Store, run: str, limit: int | None) -> None:
        super().__init__(limit)
        self.store = store
        self.run = run

    @staticmethod
    def open(store: Store, run: str, limit: int | None) -> None:
        """Create the run's row (the enqueuing side, once per run)."""
        with store.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO llm_budgets (run, token_limit, used, reserved, exceeded) VALUES (:run, :limit, 0, 0, false)"
                " ON CONFLICT (run) DO NOTHING"), {"run": run, "limit": limit})

    def reserve(self, estimate: int) -> None:
        if self.limit is None:
            return
        with self.store.engine.begin() as connection:
            granted = connection.execute(text(
                "UPDATE llm_budgets SET reserved = reserved + :e WHERE run = :run AND NOT exceeded"
                " AND used + reserved + :e <= token_limit RETURNING used"), {"e": estimate, "run": self.run}).first()
            if granted is not None:
                return
            spent = connection.execute(text(
                "UPDATE llm_budgets SET exceeded = true WHERE run = :run RETURNING used + reserved"),
                {"run": self.run}).scalar()
        self.exceeded = BudgetExceeded(self.limit, int(spent or 0), estimate)
        raise self.exceeded

    def settle(self, estimate: int, actual: int) -> None:
        super().settle(estimate, actual)  # this process's own share, for its footer
        if self.limit is None:
            return
        with self.store.engine.begin() as connection:
            connection.execute(text(
                "UPDATE llm_budgets SET reserved = reserved - :e, used = used + :a WHERE run = :run"),
                {"e": estimate, "a": actual, "run": self.run})


# --- the gateway ---------------------------------------------------------------------------


@dataclass
class Route:
    task: str
    name: str
    """The ``[models]`` key."""
    config: ModelConfig

    @property
    def model(self) -> str:
        return model_id(self.config)


@dataclass
class Answer:
    text: str
    model: str
    cached: bool
    tokens_in: int
    tokens_out: int
    ms: int
    key: str


@dataclass
class RunStats:
    """What this gateway did in this process (the ledger in the store keeps the history)."""

    calls: int = 0
    hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    retries: int = 0
    ms: int = 0
    per_task: dict[str, int] = field(default_factory=dict)


def cache_key(task: str, prompt_version: str, model: str, params: Mapping[str, Any], messages: Sequence[Message]) -> str:
    payload = json.dumps(
        {"task": task, "prompt": prompt_version, "model": model, "params": params, "input": list(messages)},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLM:
    """The one way tasks reach a model. Thread-safe: tasks may run items concurrently."""

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        budget_tokens: int | None = None,
        providers: Mapping[str, Provider] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        rng: Callable[[], float] = random.random,
        budget: Budget | None = None,
    ) -> None:
        self.config = config
        self.store = store
        limit = budget_tokens if budget_tokens is not None else config.llm.budget_tokens
        # A queue worker passes a SharedBudget: the run's allowance, spent by all workers together.
        self.budget = budget if budget is not None else Budget(limit)
        self._providers: dict[str, Provider] = dict(providers or {})
        self._semaphores = {name: threading.BoundedSemaphore(m.max_concurrency) for name, m in config.models.items()}
        self._lock = threading.Lock()
        self._sleep = sleep
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        self._rng = rng
        self._ratio: dict[str, tuple[int, int]] = {}  # model -> (estimated, reported) input tokens
        self.stats = RunStats()

    # routing

    def route(self, task: str) -> Route | None:
        """The model for ``task``: its route, else ``routes.default``, else the only model configured."""
        routes = self.config.routes
        name = getattr(routes, task, None) or routes.default
        if name is None and len(self.config.models) == 1:
            name = next(iter(self.config.models))
        if name is None:
            return None
        return Route(task, name, self.config.models[name])

    def available(self, task: str) -> bool:
        return self.route(task) is not None

    def provider(self, name: str) -> Provider:
        with self._lock:
            if name not in self._providers:
                self._providers[name] = make_provider(name, self.config.models[name])
            return self._providers[name]

    def _require(self, task: str) -> Route:
        route = self.route(task)
        if route is None:
            raise ConfigError(f"no model for the task {task!r}: add [models.NAME] and routes.{task} to tidings.toml")
        return route

    # the cache

    def _cached(self, key: str) -> LLMCall | None:
        if self.store is None:
            return None
        with self.store.session() as session:
            row = session.scalar(select(LLMCall).where(LLMCall.key == key))
            if row is None or row.output is None:
                return None
            session.execute(update(LLMCall).where(LLMCall.id == row.id).values(hits=LLMCall.hits + 1))
            return row

    def _record(self, key: str, task: str, model: str, prompt_version: str, completion: Completion, ms: int) -> None:
        if self.store is None:
            return
        values = {"output": completion.text, "tokens_in": completion.tokens_in, "tokens_out": completion.tokens_out, "ms": ms}
        try:
            with self.store.session() as session:
                session.add(LLMCall(key=key, task=task, model=model, prompt_version=prompt_version, hits=0, **values))
        except IntegrityError:
            # Another worker stored the same call first (or an earlier attempt left a row): keep ours.
            with self.store.session() as session:
                session.execute(update(LLMCall).where(LLMCall.key == key).values(**values))

    # estimates

    def _estimate_in(self, model: str, messages: Sequence[Message]) -> int:
        raw = estimate_messages(messages)
        estimated, reported = self._ratio.get(model, (0, 0))
        if estimated and reported > estimated:
            # The server counted more than we guessed before: scale up, so the budget holds.
            raw = math.ceil(raw * reported / estimated)
        return raw

    def _learn(self, model: str, estimated: int, reported: int) -> None:
        if reported <= 0:
            return
        with self._lock:
            e, r = self._ratio.get(model, (0, 0))
            self._ratio[model] = (e + estimated, r + reported)

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        backoff = min(self._backoff_cap, self._backoff_base * (2**attempt))
        jittered = backoff * (0.5 + 0.5 * self._rng())  # "equal jitter": never zero, never in lockstep
        if retry_after is None:
            return jittered
        if retry_after > self._max_retry_after:
            return None  # the server asks us to wait longer than a run should: give up on this call
        return max(retry_after, jittered * 0.1)

    # calls

    def call(
        self,
        task: str,
        messages: Sequence[Message],
        *,
        prompt_version: str,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: dict[str, Any] | None = None,
        use_cache: bool = True,
    ) -> Answer:
        """One completion for ``task``: from the cache when the same call was made before, else from
        the routed model with retries. Raises :class:`LLMError` (its subclasses included)."""
        route = self._require(task)
        cfg = route.config
        max_tokens = max_tokens or cfg.max_tokens
        temperature = cfg.temperature if temperature is None else temperature
        params = {"max_tokens": max_tokens, "temperature": temperature, "json_schema": json_schema,
                  "json_mode": cfg.json_mode if json_schema else None, "provider": cfg.provider}
        key = cache_key(task, prompt_version, route.model, params, messages)
        if use_cache:
            row = self._cached(key)
            if row is not None:
                with self._lock:
                    self.stats.hits += 1
                return Answer(row.output or "", route.model, True, row.tokens_in, row.tokens_out, row.ms, key)
        provider = self.provider(route.name)
        estimate_in = self._estimate_in(route.model, messages)
        estimate = estimate_in + max_tokens
        attempt = 0
        while True:
            self.budget.reserve(estimate)
            started = time.monotonic()
            try:
                with self._semaphores[route.name]:
                    completion = provider.complete(
                        messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema
                    )
            except LLMError as exc:
                # No usage is known for a failed call; nothing is charged to the budget.
                self.budget.settle(estimate, 0)
                with self._lock:
                    self.stats.ms += int((time.monotonic() - started) * 1000)
                if not exc.transient or attempt >= cfg.max_retries:
                    raise
                delay = self._delay(attempt, exc.retry_after)
                if delay is None:
                    raise
                log.info("%s: %s; retry %d/%d in %.1fs", route.name, exc, attempt + 1, cfg.max_retries, delay)
                with self._lock:
                    self.stats.retries += 1
                self._sleep(delay)
                attempt += 1
                continue
            ms = int((time.monotonic() - started) * 1000)
            self._learn(route.model, estimate_in, completion.tokens_in)
            if not completion.tokens_in:
                completion.tokens_in = estimate_in
            if not completion.tokens_out:
                completion.tokens_out = estimate_tokens(completion.text)
            self.budget.settle(estimate, completion.tokens_in + completion.tokens_out)
            with self._lock:
                self.stats.calls += 1
                self.stats.tokens_in += completion.tokens_in
                self.stats.tokens_out += completion.tokens_out
                self.stats.ms += ms
                self.stats.per_task[task] = self.stats.per_task.get(task, 0) + 1
            # Stored before anyone validates it: a garbage answer is still paid for and accounted.
            self._record(key, task, route.model, prompt_version, completion, ms)
            return Answer(completion.text, route.model, False, completion.tokens_in, completion.tokens_out, ms, key)

    def embed(self, texts: Sequence[str], *, task: str = "embed") -> list[list[float]]:
        """Embeddings from the ``embed`` route, or another (``embed_query``: the query's side of an
        asymmetric model); cached by the caller, in the embeddings table."""
        route = self._require(task)
        provider = self.provider(route.name)
        embed = getattr(provider, "embed", None)
        if embed is None:
            raise LLMError(f"{route.name}: this provider cannot embed")
        estimate = sum(estimate_tokens(t) for t in texts)
        self.budget.reserve(estimate)
        try:
            with self._semaphores[route.name]:
                vectors: list[list[float]] = embed(texts)
        except LLMError:
            self.budget.settle(estimate, 0)
            raise
        self.budget.settle(estimate, estimate)
        return vectors

    def close(self) -> None:
        for provider in self._providers.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()


# --- `tidings models` and `tidings stats` ----------------------------------------------------


@dataclass
class ModelCheck:
    name: str
    ok: bool
    ms: int
    detail: str


def check_model(name: str, cfg: ModelConfig, provider: Provider | None = None) -> ModelCheck:
    """Whether the model answers a tiny prompt (never cached: the point is to reach it)."""
    started = time.monotonic()
    try:
        provider = provider or make_provider(name, cfg)
        completion = provider.complete(
            [{"role": "user", "content": "Reply with the single word OK."}], max_tokens=8, temperature=0.0
        )
    except (LLMError, ConfigError) as exc:
        return ModelCheck(name, False, int((time.monotonic() - started) * 1000), str(exc))
    ms = int((time.monotonic() - started) * 1000)
    answer = " ".join(completion.text.split())[:40]
    return ModelCheck(name, True, ms, f"answered {answer!r} ({completion.tokens_in}+{completion.tokens_out} tokens)")


@dataclass
class UsageRow:
    model: str
    task: str
    calls: int
    hits: int
    tokens_in: int
    tokens_out: int
    ms: int
    cost: float | None
    """Estimated from ``config.prices`` (per million tokens); None without a price."""


def price_for(config: Config, model: str) -> dict[str, float] | None:
    """Prices are keyed by model id or by the ``[models]`` name that serves it."""
    if model in config.prices:
        return config.prices[model]
    for name, cfg in config.models.items():
        if model_id(cfg) == model and name in config.prices:
            return config.prices[name]
    return None


def usage_rows(store: Store, config: Config) -> list[UsageRow]:
    with store.session() as session:
        rows = session.execute(
            select(
                LLMCall.model, LLMCall.task, func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.hits), 0),
                func.coalesce(func.sum(LLMCall.tokens_in), 0), func.coalesce(func.sum(LLMCall.tokens_out), 0),
                func.coalesce(func.sum(LLMCall.ms), 0),
            ).group_by(LLMCall.model, LLMCall.task).order_by(LLMCall.model, LLMCall.task)
        ).all()
    out: list[UsageRow] = []
    for model, task, calls, hits, tin, tout, ms in rows:
        price = price_for(config, model)
        cost = None
        if price is not None:
            cost = (tin * price.get("input", 0.0) + tout * price.get("output", 0.0)) / 1_000_000
        out.append(UsageRow(model, task, int(calls), int(hits), int(tin), int(tout), int(ms), cost))
    return out
