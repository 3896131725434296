"""An app's HTTP port with the real `buf curl` (built from the Go module proxy): Connect and
gRPC-Web, over HTTP/1.1 and HTTP/2 with prior knowledge (h2c), with the schema from the
repository's proto/ (buf curl reflects only over its own protocol, which the HTTP port
does not serve: reflection is on the gRPC port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.go_tools import go_tool
from support.grid_service import APP, GRID, GridService, grid_service
from support.grpcurl import json_messages
from support.paths import REPO

GRID_SERVICE = "aerogrid.v1.GridService"
PROTOCOLS = ["connect", "grpcweb"]
HTTP_VERSIONS = {"http1": [], "h2c": ["--http2-prior-knowledge"]}


@pytest.fixture(scope="module")
def buf() -> Path:
    return go_tool("build_buf.sh", "buf")


@pytest.fixture
async def service() -> AsyncIterator[GridService]:
    async with grid_service() as served:
        served.commit({"k1": {"text": "hello"}, "k2": {"text": "world"}})
        yield served


async def buf_curl(
    buf: Path,
    service: GridService,
    protocol: str,
    http: str,
    method: str,
    data: dict[str, str],
    *extra: str,
) -> tuple[int, list[dict[str, Any]], str]:
    """(exit code, the response messages, stderr) of one `buf curl -v` call."""
    process = await asyncio.create_subprocess_exec(
        str(buf), "curl", "--schema", str(REPO / "proto"), "--protocol", protocol,
        *HTTP_VERSIONS[http], "-v", *extra, "-d", json.dumps(data),
        f"{service.http}/{GRID_SERVICE}/{method}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json_messages(out.decode()), err.decode()


def answered_over(stderr: str) -> str:
    """The HTTP version of the response, as buf curl -v shows it (`< (#1) HTTP/2.0 200 OK`)."""
    lines = [line for line in stderr.splitlines() if "< (#1) HTTP/" in line]
    assert lines, stderr
    return lines[0].split("HTTP/", 1)[1].split()[0]


@pytest.mark.parametrize("http", HTTP_VERSIONS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_list_grids(buf: Path, service: GridService, protocol: str, http: str) -> None:
    code, messages, stderr = await buf_curl(buf, service, protocol, http, "ListGrids", {"app": APP})
    assert code == 0, stderr
    assert answered_over(stderr) == ("2.0" if http == "h2c" else "1.1")
    [answer] = messages
    [grid] = answer["grids"]
    assert (grid["app"], grid["name"], grid["rows"]) == (APP, GRID, "2")


@pytest.mark.parametrize("http", HTTP_VERSIONS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscribe_streams_schema_and_snapshot(
    buf: Path, service: GridService, protocol: str, http: str
) -> None:
    # The stream never ends by itself: buf curl's deadline ends it once the snapshot is in.
    code, messages, stderr = await buf_curl(
        buf, service, protocol, http, "Subscribe", {"app": APP, "grid": GRID}, "--timeout", "1.5s"
    )
    assert code != 0 and "deadline_exceeded" in stderr, stderr
    assert answered_over(stderr) == ("2.0" if http == "h2c" else "1.1")
    schema, snapshot = messages[0]["schema"], messages[1]["snapshot"]
    assert schema["grid"] == GRID
    rows = {r["key"]: r["cells"][0]["stringValue"] for r in snapshot["rows"]}
    assert rows == {"k1": "hello", "k2": "world"}
