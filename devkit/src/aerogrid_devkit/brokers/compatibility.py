"""Which Kafka clients work against each local broker mode, as the compatibility suite found.

The table is not written by hand: the compatibility tests (tests/devkit/compat, `make
compat-table`) run every client against every local broker and write `compatibility.json`
beside this module; `aerogrid broker status` reads it here. Its form (the suite owns it):

```json
{"brokers": {"embedded": {"title": "...", "modes": ["embedded"]}, ...},
 "clients": {"aiokafka": "aiokafka 0.14.0", ...},
 "results": {"embedded": {"kcat": {"works": false, "reason": "..."}, ...}, ...}}
```

`brokers` names, for each broker measured, the `aerogrid broker` modes that run it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["TABLE_FILE", "ClientResult", "clients_line", "mode_results"]

TABLE_FILE = "compatibility.json"


@dataclass(frozen=True)
class ClientResult:
    client: str
    works: bool
    reason: str = ""


def _table() -> dict[str, Any]:
    try:
        table = json.loads(resources.files(__package__).joinpath(TABLE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def mode_results(mode: str) -> tuple[str, list[ClientResult]] | None:
    """The broker measured for `mode` (its title) and each client's result; None: not measured."""
    table = _table()
    brokers, clients, results = (table.get(k) for k in ("brokers", "clients", "results"))
    if not (isinstance(brokers, dict) and isinstance(results, dict)):
        return None
    titles = clients if isinstance(clients, dict) else {}
    for key, broker in brokers.items():
        row = results.get(key)
        if isinstance(broker, dict) and mode in broker.get("modes", ()) and isinstance(row, dict):
            return str(broker.get("title", key)), [
                ClientResult(str(titles.get(c, c)), bool(r.get("works")), str(r.get("reason", "")))
                for c, r in row.items()
                if isinstance(r, dict)
            ]
    return None


def clients_line(mode: str) -> str:
    """One line for `broker status`: which clients work against `mode` and which do not."""
    if mode == "external":
        return "clients: not measured (a cluster run by others)"
    found = mode_results(mode)
    if found is None:
        return f"clients: not measured for mode {mode} (no entry in brokers/{TABLE_FILE})"
    title, results = found
    working = ", ".join(r.client for r in results if r.works) or "none"
    failing = "; ".join(f"{r.client} ({r.reason})" for r in results if not r.works)
    said = f"clients (tested on {title}): work: {working}"
    return said + (f"; fail: {failing}" if failing else "")
