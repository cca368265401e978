"""The one exception tree of tidings.

TidingsError
├── ConfigError            user misconfiguration (exit code 2)
├── UsageError             a bad argument the user gave (exit code 2)
├── StoreError             the database is locked, missing or corrupt
├── SourceError            something we were asked to collect is bad
│   ├── FetchError(url, reason)          network or file fetch failed
│   └── ImportFormatError(file, line, reason)   an import file is malformed
├── ExtractError(url, reason)            a page has no article
└── LLMError(message, reason, transient)   a model call failed
    ├── LLMTimeout                       no answer within the model's timeout
    ├── LLMBadOutput(raw, problem)       an answer that fails validation
    └── BudgetExceeded                   the next call would pass --budget-tokens

Every per-item error carries a stable ``reason`` code (``http_404``, ``timeout``,
``private_host``, ``too_large``, ``no_article`` ...) that the store records on the item.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Root of every error tidings raises on purpose; the CLI shows its message, never a traceback."""

    exit_code = 1


class ConfigError(TidingsError):
    exit_code = 2


class UsageError(TidingsError):
    exit_code = 2


class StoreError(TidingsError):
    pass


class SourceError(TidingsError):
    pass


class FetchError(SourceError):
    """A URL or file could not be fetched. ``transient`` errors are retried on a re-run."""

    def __init__(self, url: str, reason: str, message: str = "", *, transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.transient = transient
        super().__init__(f"{url}: {message or reason}")


class ImportFormatError(SourceError):
    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")


class ExtractError(TidingsError):
    def __init__(self, url: str, reason: str, message: str = "") -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {message or reason}")


class LLMError(TidingsError):
    """A model call failed. ``transient`` ones (429, 5xx, timeouts, connection) are retried;
    ``fatal`` ones (bad key, unknown model) stop LLM use for the rest of the run."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "llm_error",
        transient: bool = False,
        fatal: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.transient = transient
        self.fatal = fatal
        self.retry_after = retry_after
        super().__init__(message)


class LLMTimeout(LLMError):
    def __init__(self, message: str) -> None:
        super().__init__(message, reason="timeout", transient=True)


class LLMBadOutput(LLMError):
    """The model answered, but not acceptably (invalid JSON, wrong language, too long ...)."""

    def __init__(self, raw: str, problem: str) -> None:
        self.raw = raw
        self.problem = problem
        super().__init__(f"unusable model output: {problem}", reason="bad_output")


class BudgetExceeded(LLMError):
    """Raised before a call that would go past the token budget: LLM calls stop, the run goes on."""

    def __init__(self, limit: int, used: int, needed: int) -> None:
        self.limit = limit
        self.used = used
        self.needed = needed
        super().__init__(
            f"token budget reached: {used} of {limit} used, the next call needs about {needed}",
            reason="budget",
            fatal=True,
        )


EXTRACTOR_LOGGERS = ("trafilatura", "htmldate", "readability", "courlan", "justext")
"""Libraries that log their own doubts about a page. The CLI quiets them unless -vv (tidings records each
page's outcome with its reason anyway), and the worker processes keep the parent's levels for them."""
