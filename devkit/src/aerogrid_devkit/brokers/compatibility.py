"""Which Kafka clients work against each local broker mode, as the compatibility suite found.

The table is not written by hand: the compatibility tests (tests/devkit/compat/) run every
client against every local broker mode and write `compatibility.json` beside this module;
`aerogrid broker status` reads it here. Its form:

```json
{
  "modes": {
    "embedded": {
      "aiokafka": {"works": true},
      "kcat": {"works": false, "detail": "ApiVersions v3: Read underflow"}
    },
    "kafka": {"aiokafka": {"works": true}, "kcat": {"works": true}}
  }
}
```

A client's `detail` (optional) says what failed, or what was checked. The docker mode runs
the same Apache Kafka release as the kafka mode, so it is shown with the kafka mode's row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["TABLE_FILE", "ClientResult", "clients_line", "mode_results"]

TABLE_FILE = "compatibility.json"
#: Modes that run the very broker another mode was measured on.
_SAME_BROKER = {"docker": "kafka"}


@dataclass(frozen=True)
class ClientResult:
    client: str
    works: bool
    detail: str = ""


def _table() -> dict[str, Any]:
    try:
        text = resources.files(__package__).joinpath(TABLE_FILE).read_text()
        table = json.loads(text)
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def mode_results(mode: str) -> list[ClientResult] | None:
    """The measured clients of `mode` (None: the table does not cover it)."""
    modes = _table().get("modes")
    if not isinstance(modes, dict):
        return None
    row = modes.get(mode, modes.get(_SAME_BROKER.get(mode, "")))
    if not isinstance(row, dict):
        return None
    return [
        ClientResult(str(client), bool(found.get("works")), str(found.get("detail") or ""))
        for client, found in sorted(row.items())
        if isinstance(found, dict)
    ]


def clients_line(mode: str) -> str:
    """One line for `broker status`: which clients work against `mode` and which do not."""
    if mode == "external":
        return "clients: not measured (a cluster run by others; any Kafka client should work)"
    results = mode_results(mode)
    if results is None:
        return f"clients: not measured for mode {mode} (no entry in brokers/{TABLE_FILE})"
    working = [r.client for r in results if r.works]
    failing = [f"{r.client} ({r.detail})" if r.detail else r.client for r in results if not r.works]
    said = f"clients that work: {', '.join(working) or 'none measured'}"
    if failing:
        said += f"; that do not: {', '.join(failing)}"
    return said
