"""The compatibility suite's fixtures: the committed table, and what this session saw.

With AEROGRID_COMPAT_REFRESH=1 the tests record instead of asserting, and the session ends by
writing what they saw into the data file and the README (`make compat-table`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from compat.clients import BROKERS, CLIENTS
from compat.table import Table, load, save


def refreshing() -> bool:
    return os.environ.get("AEROGRID_COMPAT_REFRESH") == "1"


@pytest.fixture(scope="session")
def committed() -> Table:
    """The table as committed (what the tests expect to see again)."""
    return load()


@pytest.fixture(scope="session")
def observed() -> Iterator[Table]:
    """The cells this session saw; written out at its end when refreshing."""
    table = load()
    table.brokers = {b.column.key: b.column for b in BROKERS}
    table.clients = {client.name: client.title() for client in CLIENTS}
    yield table
    if refreshing():
        table.results = {k: v for k, v in table.results.items() if k in table.brokers}
        save(table)
