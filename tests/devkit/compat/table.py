"""The compatibility data file and the README table made from it.

The data file, `devkit/src/aerogrid_devkit/brokers/compatibility.json`, ships with the devkit
(`aerogrid broker status` reads it) and is written only by this suite (``make compat-table``)::

    {"about": "...",
     "brokers": {"embedded": {"title": "...", "modes": ["embedded"]}, ...},
     "clients": {"aiokafka": "aiokafka 0.14.0", ...},
     "results": {"embedded": {"kcat": {"works": false, "reason": "..."}, ...}, ...}}

`brokers` are the table's columns, each naming the `aerogrid broker` modes that run that
broker; `clients` its rows (with the versions seen); `results[broker][client]` a cell.
The README holds the same table between two markers, rendered by `render`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from support.paths import REPO

DATA_FILE = REPO / "devkit" / "src" / "aerogrid_devkit" / "brokers" / "compatibility.json"
README = REPO / "README.md"
START = "<!-- compatibility table: written by tests/devkit/compat (make compat-table) -->"
END = "<!-- end of the compatibility table -->"
REFRESH = (
    "refresh the table from what the suite saw with `make compat-table` "
    "(AEROGRID_COMPAT_REFRESH=1 pytest tests/devkit/compat), and review the diff"
)
ABOUT = (
    "Which Kafka clients work against each local broker mode, as the broker compatibility "
    "suite (tests/devkit/compat) saw them. Written by `make compat-table`; do not edit."
)


@dataclass(frozen=True)
class Outcome:
    """One cell: the client did everything asked of it, or the one-line reason it did not."""

    works: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"works": self.works, "reason": self.reason}

    def cell(self) -> str:
        return "works" if self.works else f"fails: {self.reason}"


@dataclass(frozen=True)
class Broker:
    """A column: a broker, and the `aerogrid broker` modes that run it."""

    key: str
    title: str
    modes: tuple[str, ...]


@dataclass
class Table:
    brokers: dict[str, Broker]
    clients: dict[str, str]
    results: dict[str, dict[str, Outcome]]

    def to_json(self) -> dict[str, Any]:
        return {
            "about": ABOUT,
            "brokers": {
                b.key: {"title": b.title, "modes": list(b.modes)} for b in self.brokers.values()
            },
            "clients": self.clients,
            "results": {
                broker: {client: cell.to_json() for client, cell in cells.items()}
                for broker, cells in self.results.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        brokers = {
            key: Broker(key, spec["title"], tuple(spec["modes"]))
            for key, spec in data["brokers"].items()
        }
        results = {
            broker: {client: Outcome(c["works"], c["reason"]) for client, c in cells.items()}
            for broker, cells in data["results"].items()
        }
        return cls(brokers, dict(data["clients"]), results)


def load() -> Table:
    """The committed table (empty when there is none yet)."""
    if not DATA_FILE.exists():
        return Table({}, {}, {})
    return Table.from_json(json.loads(DATA_FILE.read_text()))


def render(table: Table) -> str:
    """The README's markdown table: a row per client, a column per broker."""
    brokers = list(table.brokers.values())
    lines = [
        "| client | " + " | ".join(b.title for b in brokers) + " |",
        "|---|" + "---|" * len(brokers),
    ]
    for key, title in table.clients.items():
        cells = [table.results.get(b.key, {}).get(key) for b in brokers]
        shown = [cell.cell() if cell else "not run" for cell in cells]
        lines.append(f"| {title} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table between the README's markers ("" when the markers are missing)."""
    if START not in text or END not in text:
        return ""
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def save(table: Table) -> None:
    """Write the data file and the README's table (the README must already hold the markers)."""
    DATA_FILE.write_text(json.dumps(table.to_json(), indent=2) + "\n")
    text = README.read_text()
    if START not in text or END not in text:
        raise RuntimeError(f"README.md lacks the compatibility table's markers: {START} {END}")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{render(table)}\n{END}{after}")
