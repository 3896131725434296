"""What `GridClient` hands back: rows, updates, summaries of apps and grids, its error.

Apart from the client so that code that only shows grids (the TUI's model, benchmarks)
reads these types without the connection logic; `aerogrid.client` exports them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

from aerogrid.server.messages import value_to_cell
from aerogrid.v1 import grid_pb2

__all__ = [
    "AppSummary",
    "ClientRow",
    "GridClientError",
    "GridSummary",
    "GridUpdate",
    "ResumeKind",
    "grid_summary",
    "rows_of",
    "stale_reason",
]

#: A row as clients see it: column → int, float, str, bool, None, Decimal or datetime.
ClientRow = dict[str, Any]

#: How a server answered a subscription that resumed from (epoch, seq): with the deltas
#: it missed (or nothing yet, when it was up to date), or with a fresh snapshot.
ResumeKind = Literal["delta", "snapshot"]


class GridClientError(Exception):
    """A call failed; `code` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class GridUpdate:
    """One update of a subscription.

    When `snapshot` is True, `upserts` is the whole grid and replaces what the client
    had; otherwise `upserts` and `deletes` change it. `stale_reason` is set while the
    app serves its last state but cannot update it (its broker is unreachable, say):
    keep the values, but show that they may be out of date (`stale`). A change of it
    comes as a heartbeat update, yielded even without `heartbeats=True`.
    """

    seq: int
    snapshot: bool
    upserts: dict[str, ClientRow]
    deletes: list[str]
    epoch: str
    conflated: int = 0
    heartbeat: bool = False
    stale_reason: str | None = None

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None

    def apply_to(self, rows: dict[str, ClientRow]) -> dict[str, ClientRow]:
        """Apply this update to a client's copy of the grid; returns the new copy.

        A snapshot replaces the copy; a delta changes it in place.
        """
        if self.snapshot:
            return dict(self.upserts)
        rows.update(self.upserts)
        for key in self.deletes:
            rows.pop(key, None)
        return rows


@dataclass(frozen=True)
class GridSummary:
    app: str
    name: str
    columns: list[str]
    rows: int
    ready: bool


@dataclass(frozen=True)
class AppSummary:
    name: str
    tenant: str
    status: str
    grids: list[GridSummary] = field(default_factory=list)
    message: str = ""


def stale_reason(message: grid_pb2.Schema | grid_pb2.Heartbeat) -> str | None:
    """Why the app's data is stale, as a schema or heartbeat says (None: it is not)."""
    return message.stale.reason if message.HasField("stale") else None


def rows_of(rows: Sequence[grid_pb2.Row], columns: list[str]) -> dict[str, ClientRow]:
    """Wire rows as `{row_key: {column: value}}`, with the columns the schema named."""
    return {
        row.key: {name: value_to_cell(v) for name, v in zip(columns, row.cells, strict=False)}
        for row in rows
    }


def grid_summary(info: grid_pb2.GridInfo) -> GridSummary:
    """A grid as the catalog describes it."""
    return GridSummary(
        app=info.app,
        name=info.name,
        columns=[c.name for c in info.columns],
        rows=info.rows,
        ready=info.ready,
    )
