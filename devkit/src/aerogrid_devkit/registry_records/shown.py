"""How `aerogrid tail` prints a record: place, key, headers, value (decoded ones labelled)."""

from __future__ import annotations

import json
import textwrap
from typing import Any


def shown_record(record: dict[str, Any]) -> str:
    """The lines of a described record (`kafka_tools.describe`, annotated by RecordDecoder).

    A decoded key or value is prefixed `[avro id=3 orders-value]`; one in the wire format
    that did not decode says why in `(not decoded: ...)` and is shown as stored.
    """
    where = f"{record['topic']}[{record['partition']}]@{record['offset']}"
    key = record["key"]
    if "key_schema" in record:
        key_text = f"{_label(record['key_schema'])} {json.dumps(key, ensure_ascii=False)}"
    else:
        key_text = repr(key)
    lines = [f"{where} key={key_text}"]
    if "key_note" in record:
        lines.append(f"  (key {_note(record['key_note'])})")
    lines.extend(f"  {name}: {text}" for name, text in record["headers"].items())
    value = record["value"]
    if "value_schema" in record:
        lines.append(f"  {_label(record['value_schema'])}")
    if "value_note" in record:
        lines.append(f"  ({_note(record['value_note'])})")
    shown = (
        json.dumps(value, indent=2, ensure_ascii=False) if isinstance(value, dict | list) else value
    )
    lines.append(textwrap.indent(str(shown), "  "))
    return "\n".join(lines)


def _label(schema: dict[str, Any]) -> str:
    subject = f" {schema['subject']}" if schema.get("subject") else ""
    return f"[{schema['format']} id={schema['id']}{subject}]"


def _note(reason: str) -> str:
    return reason if reason.startswith("not decoded") else f"not decoded: {reason}"
