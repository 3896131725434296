"""GridClient retries with jittered backoff: clients that lose the same server at the
same moment do not come back to it at the same instants."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from typing import Any

import grpc
from grpc import aio

from aerogrid.client import GridClient

CLIENTS = 6
ATTEMPTS = 3


async def test_clients_refused_together_retry_at_spread_instants() -> None:
    """A server that refuses every subscription (UNAVAILABLE, as one that is restarting
    does): each client's retries wait a jittered delay, so their gaps differ."""
    loop = asyncio.get_running_loop()
    attempts: dict[str, list[float]] = defaultdict(list)
    enough = asyncio.Event()

    async def subscribe(request: bytes, context: aio.ServicerContext[Any, Any]) -> None:
        caller = dict(context.invocation_metadata() or ())["authorization"]
        attempts[str(caller)].append(loop.time())
        if len(attempts) == CLIENTS and all(len(t) >= ATTEMPTS for t in attempts.values()):
            enough.set()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

    handler = grpc.method_handlers_generic_handler(
        "aerogrid.v1.GridService",
        {"Subscribe": grpc.unary_stream_rpc_method_handler(subscribe)},
    )
    server = aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def follow(token: str) -> None:
        target = f"127.0.0.1:{port}"
        async with GridClient(target, token, reconnect_delay=0.4, reconnect_max=0.4) as client:
            async for _ in client.subscribe("orders", "product_sum"):
                raise AssertionError("the server sends nothing")

    tasks = [asyncio.create_task(follow(f"c{i}")) for i in range(CLIENTS)]
    try:
        await asyncio.wait_for(enough.wait(), timeout=10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop(None)

    gaps = [b - a for times in attempts.values() for a, b in itertools.pairwise(times)]
    assert len(gaps) >= CLIENTS * (ATTEMPTS - 1)
    # Each gap is drawn from [0.2, 0.4]: never a hammering client ...
    assert min(gaps) >= 0.19
    # ... and not one fixed delay shared by all: a fixed 0.4 s would put every gap within
    # a few milliseconds of the others, so every client would hit the server at once.
    assert max(gaps) - min(gaps) > 0.05
