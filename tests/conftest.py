"""Shared fixtures. Tests read the real data from ../shared/corpus and never write into it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own store path and never sees a tidings.toml from the working directory."""
    monkeypatch.setenv("TIDINGS_DB", str(tmp_path / "tidings.db"))
    monkeypatch.delenv("TIDINGS_TOKEN", raising=False)
    os.environ.setdefault("TZ", "UTC")
