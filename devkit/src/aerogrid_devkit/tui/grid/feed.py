"""A grid's feed: what the grid view is fed (its columns, its updates, where the
connection stands) and `grid_feed`, which follows one grid over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import grpc

from aerogrid.backoff import Backoff
from aerogrid.client import GridClient, GridClientError
from aerogrid.server.errors import Code

__all__ = [
    "ConnectionState",
    "FeedEvent",
    "GridSchema",
    "GridSource",
    "UpdateLike",
    "grid_feed",
    "one_line",
]


class UpdateLike(Protocol):
    """What the model needs of an update: `aerogrid.client.GridUpdate` is one."""

    @property
    def snapshot(self) -> bool: ...

    @property
    def upserts(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def deletes(self) -> Sequence[str]: ...

    @property
    def stale_reason(self) -> str | None: ...


@dataclass(frozen=True)
class GridSchema:
    """The grid's columns, known before any row arrives (an empty grid has them too)."""

    columns: tuple[str, ...]


@dataclass(frozen=True)
class ConnectionState:
    """Where a feed stands; `detail` is text a user can act on (an error, a retry)."""

    phase: Literal["connecting", "live", "reconnecting", "error", "ended"]
    detail: str = ""


#: What a feed of a grid yields: its columns, its updates and its connection state.
FeedEvent = GridSchema | UpdateLike | ConnectionState

#: A feed of one grid: its schema, its updates and its connection state, as events.
GridSource = Callable[[], AsyncGenerator[FeedEvent, None]]

#: Failures worth retrying: the status table's retryable codes (the endpoint is down or
#: restarting, the network blinked), and RESOURCE_EXHAUSTED (the server dropped this stream
#: for falling behind, or is at its connection cap: a view on screen waits for a slot).
_RETRYABLE: Final = frozenset(
    {*(code.grpc_status for code in Code if code.retryable), Code.RESOURCE_EXHAUSTED.grpc_status}
)


def one_line(text: str, limit: int = 200) -> str:
    """Text squeezed onto one line of at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: GridClientError, endpoint: str) -> str:
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach {endpoint} ({one_line(exc.message, 120)})"
    return f"{exc.code.name}: {one_line(exc.message)}"


async def grid_feed(
    endpoint: str,
    app: str,
    grid: str,
    *,
    token: str | None = None,
    retry_delay: float = 0.5,
    max_retry_delay: float = 5.0,
) -> AsyncGenerator[FeedEvent, None]:
    """Follow one grid over gRPC, saying what state the connection is in.

    `GridClient.subscribe` can resume on its own, but silently; this loop resumes the
    same way (from the last epoch and sequence) so the screen can show "reconnecting…"
    and why. The grid's columns come from the catalog first, so an unknown app or grid
    is a clear error and an empty grid still has its header. Retries back off from
    `retry_delay` to `max_retry_delay`, jittered, and start over once the feed is live.
    """
    epoch, seq = "", 0
    columns: tuple[str, ...] | None = None
    backoff = Backoff(initial=retry_delay, maximum=max_retry_delay)
    async with GridClient(endpoint, token) as client:
        yield ConnectionState("connecting", f"connecting to {endpoint}…")
        while True:
            try:
                if columns is None:
                    found = [g for g in await client.grids(app) if g.name == grid]
                    if not found:
                        yield ConnectionState("error", f"app {app!r} has no grid named {grid!r}")
                        return
                    columns = tuple(found[0].columns)
                    yield GridSchema(columns)
                live = False
                async for update in client.subscribe(
                    app, grid, resume_epoch=epoch, resume_seq=seq, reconnect=False
                ):
                    if not live:
                        live = True
                        backoff.reset()
                        yield ConnectionState("live")
                    epoch, seq = update.epoch, update.seq
                    yield update
                detail = "the server ended the stream"
            except GridClientError as exc:
                if exc.code not in _RETRYABLE:
                    yield ConnectionState("error", _describe(exc, endpoint))
                    return
                detail = _describe(exc, endpoint)
            delay = backoff.next_delay()
            yield ConnectionState("reconnecting", f"{detail}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)
