"""The committed data file and the README's table say the same, for every client and broker."""

from __future__ import annotations

from compat.clients import BROKERS, CLIENTS
from compat.table import DATA_FILE, README, REFRESH, load, readme_table, render


def test_the_data_file_has_a_cell_for_every_client_and_broker() -> None:
    table = load()
    assert DATA_FILE.exists(), f"no {DATA_FILE.name}: {REFRESH}"
    assert list(table.brokers) == [b.column.key for b in BROKERS], REFRESH
    assert list(table.clients) == [c.name for c in CLIENTS], REFRESH
    for broker in table.brokers:
        assert set(table.results.get(broker, {})) == set(table.clients), REFRESH


def test_the_readme_table_is_the_data_file() -> None:
    assert readme_table(README.read_text()) == render(load()), (
        f"README.md's compatibility table is not {DATA_FILE.name}'s: {REFRESH}"
    )
