"""Cycle numbers: the sequence numbers every replica of an app agrees on.

Each commit cycle of the active replica gets the next number, and every changelog record it
writes carries it in the `aerogrid-cycle` header as `LINEAGE.N`, the last record of a grid
in the cycle as `LINEAGE.N!`. A standby tailing the changelog therefore knows where each
cycle of each grid ends, and publishes the grid's state after cycle N as seq N — the
same state the active published as seq N. The lineage is minted when an app's changelog
starts empty (a new app, or data lost with every process down) and then kept: it names the
numbering, so a subscriber's epoch changes only when the numbering starts over.

Numbers of cycles that were never committed (an aborted transaction, a cycle without its
checkpoint) are reused by the next active: no replica ever published them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import NamedTuple

HEADER = "aerogrid-cycle"
#: The changelog key of a lineage's announcement: a new active writes one record under it
#: (cycle 0) to every grid's changelog before its first cycle, so standbys share the epoch
#: at once. JSON null can never be a row key (rows are keyed by str or int).
LINEAGE_KEY = b"null"


class CycleMark(NamedTuple):
    lineage: str
    number: int
    #: The last record of its grid in the cycle: the grid's cycle is complete.
    last: bool


def new_lineage() -> str:
    return secrets.token_hex(4)


def header(lineage: str, number: int, *, last: bool) -> tuple[str, bytes]:
    return (HEADER, f"{lineage}.{number}{'!' if last else ''}".encode())


def mark_of(headers: Iterable[tuple[str, bytes]] | None) -> CycleMark | None:
    """The cycle a changelog record was written in (None: written before cycle numbers)."""
    for name, value in headers or ():
        if name == HEADER:
            text = value.decode("ascii", "replace")
            last = text.endswith("!")
            lineage, _, number = text.rstrip("!").rpartition(".")
            if not number.isdigit():
                return None
            return CycleMark(lineage, int(number), last)
    return None


def epoch(lineage: str | None, columns: Iterable[str]) -> str:
    """A grid's epoch on every replica: the numbering and the columns it is read with.

    Before a lineage exists (an app that has not committed a cycle yet), each process
    has its own, so a client moving between replicas then gets a snapshot.
    """
    shape = hashlib.sha256(",".join(columns).encode()).hexdigest()[:6]
    return f"{lineage or 'new-' + secrets.token_hex(4)}-{shape}"
