"""Start-up of the ``tidings`` command (issue 14): what the process entry (``cli.main``) leaves
out, and that leaving it out changes nothing a user sees. Tests of imports and outputs, not of
time: ``bench/startup.py`` measures the time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli import DEFERRED_IMPORTS, app, app_for, command_name, root_value_options
from tidings.store import open_store

ENV = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "100"}
ENV.pop("TIDINGS_DB", None)
ENV.pop("PYDANTIC_DISABLE_PLUGINS", None)  # main sets it, as for a user who never heard of it


def run_main(*args: str, cwd: Path) -> tuple[int, str, set[str]]:
    """Run ``tidings ARGS`` as the installed script does (``cli.main``) in a fresh interpreter:
    its exit code, its stdout and the modules it had loaded when it exited."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules))))\n"
        "from tidings.cli import main\n"
        "main()\n"
    )
    done = _python(probe, *args, cwd=cwd)
    assert "MODULES " in done.stderr, done.stderr
    return done.returncode, done.stdout, set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def run_python(code: str, cwd: Path) -> str:
    done = _python(code, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS…`` in a fresh interpreter, with the test environment."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=ENV, check=False
    )


# Imported at the top of typer's help renderer and pydantic, for what tidings never uses there.
DEFERRED_FOR_HELP = ("rich.markdown", "rich.traceback", "markdown_it", "pygments", "importlib.metadata")
DEFERRED_FOR_CONFIG = ("importlib.metadata", "secrets", "tomllib")


def test_help_renders_without_markdown_traceback_or_metadata(tmp_path: Path) -> None:
    code, out, modules = run_main("--help", cwd=tmp_path)
    assert code == 0 and "Usage: tidings" in out and "config" in out and "--budget-tokens" in out
    assert "typer.rich_utils" in modules  # the help was rendered by typer's rich renderer...
    assert [name for name in DEFERRED_FOR_HELP if name in modules] == []  # ...without these


def test_config_show_prints_the_defaults_without_metadata_secrets_or_toml(tmp_path: Path) -> None:
    from tidings.config import Config

    code, out, modules = run_main("config", "show", cwd=tmp_path)
    assert code == 0
    assert json.loads(out) == json.loads(Config().model_dump_json())
    assert [name for name in DEFERRED_FOR_CONFIG if name in modules] == []


def test_config_show_reads_a_file_and_store_commands_run(tmp_path: Path) -> None:
    (tmp_path / "tidings.toml").write_text('week_ends_on = "monday"\n', encoding="utf-8")
    code, out, modules = run_main("config", "show", cwd=tmp_path)
    assert code == 0 and json.loads(out)["week_ends_on"] == "monday" and "tomllib" in modules
    open_store(tmp_path / "t.db").close()
    code, out, _modules = run_main("--db", str(tmp_path / "t.db"), "items", "--json", cwd=tmp_path)
    assert code == 0 and out == ""  # JSON lines, one per item: none in a new store


def test_each_deferred_name_is_the_real_one_when_used(tmp_path: Path) -> None:
    """What the deferred modules hold works as the real names would: typer's markdown mode and
    rich tracebacks (a crash under -vv), pydantic's plugin lookup when plugins are on, secrets."""
    assert set(DEFERRED_IMPORTS) == {"typer.rich_utils", "pydantic.plugin._loader", "pydantic.types"}
    code = """
import sys
from tidings.cli import DeferringFinder
sys.meta_path.insert(0, DeferringFinder())
import typer.rich_utils as rich_utils, pydantic.types, pydantic.plugin._loader as loader
assert "rich.markdown" not in sys.modules and "importlib.metadata" not in sys.modules
assert "secrets" not in sys.modules
from rich.markdown import Markdown
from rich.traceback import Traceback
from typer.models import DeveloperExceptionConfig
assert isinstance(rich_utils._make_rich_text(text="**x**", markup_mode="markdown"), Markdown)
try:
    1 / 0
except ZeroDivisionError as exc:
    assert isinstance(rich_utils.get_traceback(exc, DeveloperExceptionConfig(), []), Traceback)
plugins = list(loader.get_plugins())  # plugins on (no PYDANTIC_DISABLE_PLUGINS): the real entry points
assert "importlib.metadata" in sys.modules
assert len(pydantic.types.secrets.token_hex(4)) == 8
print("ok")
"""
    assert run_python(code, tmp_path).strip() == "ok"


def test_a_deferred_module_used_beyond_its_names_is_imported_as_written(tmp_path: Path) -> None:
    """A library release that takes more from a deferred module than the table lists must not break
    every command: its module is imported again with the real one (at the old cost)."""
    (tmp_path / "takes_two.py").write_text("from tomllib import loads, TOMLDecodeError\n", encoding="utf-8")
    (tmp_path / "takes_one.py").write_text("from tomllib import loads\n", encoding="utf-8")
    code = """
import sys
from tidings.cli import DeferringFinder, Deferred
sys.meta_path.insert(0, DeferringFinder({"takes_one": {"tomllib": ("loads",)},
                                         "takes_two": {"tomllib": ("loads",)}}))
import takes_one
assert "tomllib" not in sys.modules and isinstance(takes_one.loads, Deferred)
assert takes_one.loads("a = 1") == {"a": 1} and "tomllib" in sys.modules
del sys.modules["tomllib"]
import takes_two
import tomllib
assert takes_two.TOMLDecodeError is tomllib.TOMLDecodeError and takes_two.loads is tomllib.loads
print("imported as written")
"""
    assert "imported as written" in run_python(code, tmp_path)


# --- the command tree: only the command asked for ---------------------------------------------------


def test_command_name_reads_argv_as_click_does() -> None:
    values = root_value_options()
    assert values == {"--db", "--config", "--budget-tokens"}
    cases = {
        ("config", "show"): "config",
        ("--db", "config", "items"): "items",  # a store named config
        ("--db=x", "-vv", "-q", "items", "--json"): "items",
        ("--budget-tokens", "5", "digest"): "digest",
        ("--", "items"): "items",
        ("-vh", "items"): None,  # the root's help, asked before the command
        ("--help",): None,
        ("--version",): None,
        ("--db",): None,
    }
    assert {argv: command_name(list(argv), values) for argv in cases} == cases


def test_app_for_holds_only_the_command_named_or_else_the_whole_app() -> None:
    pruned = app_for(["--db", "x.db", "config", "show"])
    assert [info.name for info in pruned.registered_groups] == ["config"] and pruned.registered_commands == []
    assert pruned.registered_callback is app.registered_callback
    assert app_for(["confg", "show"]) is app  # no such command: the whole app says what there is
    assert app_for(["--help"]) is app
    assert len(app.registered_groups) > 1  # the app itself is never changed


def command_paths() -> list[list[str]]:
    import typer.main

    def walk(group: object, prefix: list[str]) -> list[list[str]]:
        paths = []
        for name, command in group.commands.items():  # type: ignore[attr-defined]
            paths.append([*prefix, name])
            if hasattr(command, "commands"):
                paths.extend(walk(command, [*prefix, name]))
        return paths

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_command_has_the_same_help_from_the_pruned_app(path: list[str]) -> None:
    runner = CliRunner()
    whole = runner.invoke(
        app, [*path, "--help"], prog_name="tidings", env={"COLUMNS": "100", "NO_COLOR": "1"}
    )
    pruned = runner.invoke(
        app_for(path), [*path, "--help"], prog_name="tidings", env={"COLUMNS": "100", "NO_COLOR": "1"}
    )
    assert whole.exit_code == 0 and "Usage: tidings" in whole.output
    assert pruned.exit_code == whole.exit_code and pruned.output == whole.output
