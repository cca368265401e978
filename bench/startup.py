"""Benchmark: how long a ``tidings`` command takes to start, against a bare ``import typer``.

Every figure is a whole process, timed from outside (start to exit), so interpreter start-up and
imports are in it: that is what a user waits for. The baseline, ``python -c "import typer"``, runs
in the same run, interleaved with the commands (baseline, help, version, ... then again), so a
machine that slows down part-way slows every command alike. Each figure is the median of
``--repeat`` runs after one warm-up round; ``ratio`` = command / baseline. Beside the wall time,
each run's CPU time (user + system, from the kernel's accounting of the child) gives ``cpu_ratio``:
on a loaded machine a process waits for a core, which wall time counts and CPU time does not. The light store
commands run on a store made (and migrated) before timing, so they measure start-up, not
Alembic. ``store_floor`` times importing only the libraries a store command cannot do without
(typer, SQLAlchemy's ORM, pydantic): how close the store commands are to what is possible with
them. The last line printed is JSON.

tidings' own modules are compiled to bytecode first, as ``pip install`` compiles an installed
package and as the first run of an editable one does: the libraries of the baseline are read
from their ``.pyc`` files, and with ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) an
editable checkout would otherwise compile its sources again on every run (13 ms for ``cli.py``
alone), a cost no installed copy pays.

    python bench/startup.py --repeat 9
    python bench/startup.py --max-ratio 3   # exit 1 when a command is above 3x the baseline
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tidings_command() -> list[str]:
    """The installed ``tidings`` script next to this interpreter (what a user runs), else
    ``python -m tidings.cli``."""
    script = shutil.which("tidings", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tidings.cli"]


def commands(db: Path) -> dict[str, list[str]]:
    """The commands timed, by the name their figures carry in the JSON."""
    tidings = tidings_command()
    store = [*tidings, "--db", str(db)]
    return {
        "baseline": [sys.executable, "-c", "import typer"],
        # Not a tidings command: the libraries every store command must load (the ORM, and pydantic for the
        # config), with nothing of ours. A store command cannot start faster than this.
        "store_floor": [sys.executable, "-c", "import typer, sqlalchemy.orm, pydantic"],
        "help": [*tidings, "--help"],
        "version": [*tidings, "--version"],
        "config": [*tidings, "config", "show"],
        "items": [*store, "items", "--json"],
        "feeds": [*store, "feeds", "list"],
        "digest": [*store, "digest", "--week", "2024-06-09"],
    }


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run (runs are one at a time, so the children's CPU time
    grows by this run's alone); a command that fails makes the benchmark fail (a fast crash is
    no start-up figure)."""
    cpu = children_cpu_ms()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed, children_cpu_ms() - cpu


def prepare_store(db: Path, env: dict[str, str], cwd: Path) -> None:
    """Create and migrate the store once, untimed; the timed commands then find it at head."""
    run_once([*tidings_command(), "--db", str(db), "items", "--json"], env, cwd)


def measure(repeat: int, only: list[str] | None) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU milliseconds per command."""
    with tempfile.TemporaryDirectory(prefix="tidings-startup-") as tmp:
        work = Path(tmp)
        db = work / "bench.db"
        # No user config, no colour, no terminal: the same work on every machine.
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "100"}
        env.pop("TIDINGS_DB", None)
        prepare_store(db, env, work)
        todo = {name: argv for name, argv in commands(db).items() if only is None or name in {"baseline", *only}}
        for argv in todo.values():  # warm-up: the file cache, .pyc files
            run_once(argv, env, work)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in todo}
        for _ in range(repeat):
            for name, argv in todo.items():
                runs[name].append(run_once(argv, env, work))
    wall = {name: statistics.median(w for w, _ in values) for name, values in runs.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in runs.items()}
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs per command (median reported).")
    parser.add_argument("--only", nargs="*", help="Only these commands (the baseline always runs).")
    parser.add_argument("--max-ratio", type=float, default=None, help="Exit 1 if a command is above this ratio.")
    args = parser.parse_args()
    import tidings  # only to find the package: the timed processes import it themselves

    compiled = compileall.compile_dir(Path(tidings.__file__).parent, quiet=1)
    medians, cpu = measure(max(1, args.repeat), args.only)
    baseline = medians.pop("baseline")
    baseline_cpu = cpu.pop("baseline")
    label = 'baseline (python -c "import typer")'
    print(f"{label:48} {baseline:8.1f} ms  {'':6} cpu {baseline_cpu:6.1f} ms")
    result: dict[str, float | int | str] = {"baseline_ms": round(baseline, 1), "baseline_cpu_ms": round(baseline_cpu, 1)}
    worst = worst_cpu = 0.0
    for name, ms in medians.items():
        ratio = ms / baseline
        cpu_ratio = cpu[name] / baseline_cpu
        if name != "store_floor":
            worst = max(worst, ratio)
            worst_cpu = max(worst_cpu, cpu_ratio)
        label = 'floor (import typer, sqlalchemy.orm, pydantic)' if name == "store_floor" else f"tidings {name}"
        print(f"{label:48} {ms:8.1f} ms  {ratio:5.2f}x  cpu {cpu[name]:6.1f} ms  {cpu_ratio:5.2f}x")
        result[f"{name}_ms"] = round(ms, 1)
        result[f"{name}_ratio"] = round(ratio, 2)
        result[f"{name}_cpu_ms"] = round(cpu[name], 1)
        result[f"{name}_cpu_ratio"] = round(cpu_ratio, 2)
    result["max_ratio"] = round(worst, 2)
    result["max_cpu_ratio"] = round(worst_cpu, 2)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    result["repeat"] = args.repeat
    result["bytecode"] = bool(compiled)
    print(json.dumps(result))
    return 1 if args.max_ratio is not None and worst > args.max_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
