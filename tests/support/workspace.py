"""Apps under the devkit's Supervisor behind one LocalServer, for the tests that need both."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import Supervisor


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    """Await `check` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def supervised_endpoint(
    files: Mapping[str, Path],
    bootstrap: str,
    *,
    running: Iterable[str],
    replicas: Mapping[str, int] | None = None,
    **endpoint_options: Any,
) -> AsyncIterator[tuple[Supervisor, LocalServer]]:
    """`files` run by a Supervisor (fast restarts; `replicas` processes per app) behind a
    LocalServer on a free port, once the apps named in `running` run; both stopped on the
    way out."""
    supervisor = Supervisor(dict(files), bootstrap, replicas=replicas, backoff_start=0.5)
    endpoint = LocalServer(supervisor, port=0, **endpoint_options)
    await endpoint.start()
    try:
        await supervisor.start()
        try:
            wanted = list(running)
            await wait_for(lambda: all(supervisor.apps[k].status == "running" for k in wanted), 90)
            yield supervisor, endpoint
        finally:
            await supervisor.stop()
    finally:
        await endpoint.stop()
