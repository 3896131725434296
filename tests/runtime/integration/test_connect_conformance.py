"""The official Connect conformance suite (connectrpc.com/conformance, server mode) against
AeroGrid's protocol layer: Connect and gRPC-Web over HTTP/1.1 and HTTP/2, with and without
TLS, served by `aerogrid.server.web` under `aerogrid.server.http_server`; gRPC by grpcio.

What is claimed is tests/runtime/conformance/config.yaml; the few native gRPC cases grpcio
cannot pass are listed, each with its reason, in known_failing.txt (they must fail) and
skipped.txt (they would break other cases).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

from support.go_tools import go_tool
from support.paths import REPO

CONFORMANCE = REPO / "tests" / "runtime" / "conformance"
#: Fewer cases than this means the config or the runner stopped claiming what it did.
MIN_CASES = 2300


def generate_protos(proto_root: Path, out: Path) -> None:
    """The suite's messages as Python (`connectrpc.conformance.v1.*_pb2`)."""
    out.mkdir()
    sources = sorted(str(p) for p in (proto_root / "connectrpc/conformance/v1").glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main(
        ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}", *sources]
    )
    assert status == 0, f"protoc failed on {sources}"


def test_conformance_suite_passes(tmp_path: Path) -> None:
    runner = go_tool("build_conformance.sh", "connectconformance")
    generated = tmp_path / "gen"
    generate_protos(runner.parent.parent / "proto", generated)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(generated), *sys.path])}
    done = subprocess.run(
        [
            str(runner),
            "--mode",
            "server",
            "--conf",
            str(CONFORMANCE / "config.yaml"),
            "--known-failing",
            f"@{CONFORMANCE / 'known_failing.txt'}",
            "--skip",
            f"@{CONFORMANCE / 'skipped.txt'}",
            # Not more: on two cores the timeout cases (a deadline of a few hundred ms)
            # failed once in a clean run with 8 at a time.
            "--parallel",
            "4",
            "--",
            sys.executable,
            str(CONFORMANCE / "server.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    tail = output[-6000:]
    assert done.returncode == 0, tail
    total = re.search(r"Total cases: (\d+)\s+(\d+) passed, (\d+) failed", output)
    assert total is not None, tail
    cases, passed, failed = map(int, total.groups())
    assert failed == 0 and passed > 0, tail
    assert cases >= MIN_CASES, f"only {cases} cases ran:\n{tail}"
    assert "could not be run" not in output, tail
