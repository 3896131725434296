"""`make demo` end to end: the embedded broker, the orders app, a feed, a live grid."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from support.apps import REPO


def test_demo_runs_and_ends_with_the_final_grid() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "ordersapp" / "demo.py"), "--duration", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    final = json.loads(lines[-1])["product_sum"]
    summary = re.search(r"(\d+) orders sent \((\d+) malformed.*?\); (\d+) units", done.stdout)
    assert summary is not None, done.stdout
    sent, malformed, units = map(int, summary.groups())
    assert sent > 50 and malformed == sent // 97
    assert len(final) >= 5
    assert sum(row["units_sold"] for row in final.values()) == units > 0
    assert "-- product_sum" in done.stdout  # the grid was printed live as it changed
