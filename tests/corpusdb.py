"""The shared corpus as one indexed store, imported the way a user would (CLI: digests, social archive,
notes, blog posts, then `tidings index`). Search, ask and the natural-question tests all need it; it
is built once per test session (see the ``indexed_corpus_db`` fixture) and each module works on its
own copy, so one module's edits never reach another's."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from tidings.cli import app


def run_cli(db: Path | str, *args: str) -> str:
    """``tidings --db DB ARGS…`` in process (a SQLite file or a database URL); asserts exit 0 and gives stdout."""
    result = CliRunner().invoke(app, ["--db", str(db), *args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def import_corpus(db: Path | str, corpus_dir: Path) -> Path | str:
    """The shared corpus (digests, social, notes, blog) imported and indexed into ``db``, a SQLite file or
    a PostgreSQL URL, the same way on both."""
    run_cli(db, "import", "--format", "digest", str(corpus_dir / "digests"))
    run_cli(db, "import", str(corpus_dir / "social"))
    run_cli(db, "import", str(corpus_dir / "notes"))
    run_cli(db, "import", "--format", "blog", str(corpus_dir / "blog"))
    run_cli(db, "index")
    if isinstance(db, Path):
        with sqlite3.connect(db) as conn:  # fold the WAL into the file so a plain copy is complete
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def copy_store(source: Path, target: Path) -> Path:
    """The store file and its search index beside it (``<file>.search/``), which is tied to the file."""
    shutil.copy(source, target)
    index = Path(f"{source}.search")
    if index.is_dir():
        shutil.copytree(index, Path(f"{target}.search"))
    return target
