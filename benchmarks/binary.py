"""The desktop binary against the virtualenv it is frozen from.

* Size: the one-dir folder and the one-file program (`make dist` builds both).
* Start to `--help`: process start to exit, one-dir and one-file binaries side by side
  with `.venv/bin/aerogrid --help` (the one-file program unpacks itself to a temporary
  folder on every start, which is what it pays for being one file).
* Demo start: `aerogrid demo --headless` from process start to its first grid update line
  (embedded broker, the orders app as a child, the local endpoint, the feed), from the
  one-dir binary and from the virtualenv, alternating so drift hits both alike.

Runs from a temporary folder with a bare PATH, as a user who downloaded the binary would.

    .venv/bin/python -m benchmarks.binary            # 5 runs each; make dist first
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, seconds_summary, write_result
from benchmarks.devkit_loop import demo_first_update

ONEDIR = REPO / "dist" / "binary" / "onedir" / "aerogrid"
ONEFILE = REPO / "dist" / "binary" / "onefile" / "aerogrid"
VENV_AEROGRID = Path(sys.executable).parent / "aerogrid"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def megabytes(size: int) -> float:
    return round(size / 1e6, 1)


def bare_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AEROGRID_DEVCERT_DIR": str(home / "devcert"),
    }


def time_help(command: Path, cwd: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([str(command), "--help"], cwd=cwd, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    onedir_program = ONEDIR / "aerogrid"
    for needed in (onedir_program, ONEFILE):
        if not needed.is_file():
            print(f"{needed} is missing: run `make dist` first", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        env = bare_env(cwd)
        venv_env = {**os.environ, "AEROGRID_DEVCERT_DIR": str(cwd / "devcert")}
        programs = {"onedir": onedir_program, "onefile": ONEFILE}
        help_times: dict[str, list[float]] = {name: [] for name in (*programs, "venv")}
        for program in programs.values():
            time_help(program, cwd, env)  # warm the page cache (and the one-file unpack)
        time_help(VENV_AEROGRID, cwd, venv_env)
        for _ in range(args.runs):
            for name, program in programs.items():
                help_times[name].append(time_help(program, cwd, env))
            help_times["venv"].append(time_help(VENV_AEROGRID, cwd, venv_env))

        demo_times: dict[str, list[float]] = {"onedir": [], "venv": []}
        demo_first_update([str(onedir_program)], cwd, env)  # first runs apart: cold caches
        demo_first_update([str(VENV_AEROGRID)], cwd, venv_env)
        for _ in range(args.runs):
            demo_times["onedir"].append(demo_first_update([str(onedir_program)], cwd, env))
            demo_times["venv"].append(demo_first_update([str(VENV_AEROGRID)], cwd, venv_env))

    def ratio(a: list[float], b: list[float]) -> float:
        return round(statistics.median(a) / statistics.median(b), 2)

    result: dict[str, Any] = {
        "size_mb": {
            "onedir": megabytes(folder_bytes(ONEDIR)),
            "onefile": megabytes(ONEFILE.stat().st_size),
        },
        "start_to_help": {name: seconds_summary(times) for name, times in help_times.items()},
        "demo_first_update": {name: seconds_summary(times) for name, times in demo_times.items()},
        "ratios": {
            "help_onedir_over_venv": ratio(help_times["onedir"], help_times["venv"]),
            "help_onefile_over_venv": ratio(help_times["onefile"], help_times["venv"]),
            "demo_onedir_over_venv": ratio(demo_times["onedir"], demo_times["venv"]),
        },
    }
    path = write_result("binary", result)
    print(f"size (MB): {result['size_mb']}")
    for name, summary in result["start_to_help"].items():
        print(f"start to --help, {name:8}: {summary}")
    for name, summary in result["demo_first_update"].items():
        print(f"demo to first grid update, {name:8}: {summary}")
    print(f"ratios: {result['ratios']}  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
