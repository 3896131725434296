"""The committed Python code of proto/ is what scripts/gen_proto.sh makes of it today.

A .proto edited without `make proto` would otherwise ship stubs that disagree with the
contract the TypeScript add-in is generated from (excel's `npm run check-gen`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

COMMITTED = REPO / "runtime" / "src" / "aerogrid" / "v1"


def test_python_stubs_match_proto(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)  # protoc-gen-mypy lives next to python
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_proto.sh")], env=env, check=True, timeout=120
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "v1").iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code (run `make proto`): {stale}"
