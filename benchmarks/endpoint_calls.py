"""Round trips through the devkit's local endpoint: a Connect unary call, per protocol.

A LocalServer with no apps (the catalog's ListApps is the gateway's own answer) on a free
port, in this process, with a development certificate in a temporary folder. httpx calls
`CatalogService/ListApps` (Connect JSON) `--calls` times on one kept-alive connection,
after 30 unmeasured ones, over HTTP/1.1, HTTP/1.1 in TLS, h2c and h2 in TLS; a protocol
the endpoint does not serve is reported as failing. Run it against another checkout with
`PYTHONPATH=DIR/runtime/src:DIR/devkit/src` for a before/after pair.

    .venv/bin/python -m benchmarks.endpoint_calls
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import Supervisor
from benchmarks._common import write_result

PATH = "/aerogrid.v1.CatalogService/ListApps"
HEADERS = {"connect-protocol-version": "1"}


async def _round_trips(client: httpx.AsyncClient, calls: int) -> dict[str, Any]:
    for _ in range(30):
        await client.post(PATH, json={}, headers=HEADERS)
    times = []
    version = ""
    for _ in range(calls):
        started = time.perf_counter()
        response = await client.post(PATH, json={}, headers=HEADERS)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        version = response.http_version
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p99_ms": round(times[int(len(times) * 0.99)], 3),
        "http_version": version,
    }


async def measure(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        endpoint = LocalServer(Supervisor({}, "127.0.0.1:1"), port=0, devcert_dir=Path(folder))
        async with endpoint:
            assert endpoint.devcert is not None and endpoint.https_url is not None
            ca = ssl.create_default_context(cafile=str(endpoint.devcert.ca_cert))
            cases: dict[str, dict[str, Any]] = {
                "h1": {"base_url": endpoint.url},
                "h1 in TLS": {"base_url": endpoint.https_url, "verify": ca},
                "h2c": {"base_url": endpoint.url, "http1": False, "http2": True},
                "h2 in TLS": {"base_url": endpoint.https_url, "verify": ca, "http2": True},
            }
            results: dict[str, Any] = {}
            for name, options in cases.items():
                try:
                    async with httpx.AsyncClient(timeout=5, **options) as client:
                        results[name] = await _round_trips(client, calls)
                except httpx.HTTPError as exc:
                    results[name] = {"fails": type(exc).__name__}
                print(f"{name}: {results[name]}", flush=True)
            return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="measured calls each [400]")
    parser.add_argument("--out", default="endpoint_calls", help="results/NAME.json")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.calls))
    write_result(
        args.out,
        {
            "benchmark": "endpoint_calls",
            "command": " ".join(["python -m benchmarks.endpoint_calls", *(argv or sys.argv[1:])]),
            "settings": vars(args),
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
