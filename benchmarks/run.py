"""`make bench`: every benchmark, one after another, results in benchmarks/results/."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "benchmarks.ingest",
    "benchmarks.ingest_formats",
    "benchmarks.state",
    "benchmarks.fanout",
    "benchmarks.failover",
    "benchmarks.replicas_fanout",
    "benchmarks.replicas_cost",
    "benchmarks.tui_frames",
    "benchmarks.excel_feed",
    "benchmarks.devkit_loop",
    "benchmarks.promote",
    "benchmarks.promote_node",
    "benchmarks.images",
    "benchmarks.binary",
]


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module], check=False).returncode:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
