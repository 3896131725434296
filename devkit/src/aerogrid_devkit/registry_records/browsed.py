"""Registry-format records among browsed ones (the TUI's topic browser), decoded for showing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aerogrid.errors import ConfigurationError
from aerogrid_devkit.kafka_tools import BrowsedRecord
from aerogrid_devkit.registry_records.decode import Decoded, RecordDecoder, Undecoded
from aerogrid_devkit.registry_records.settings import resolve_registry

__all__ = ["RecordFormats", "decode_records"]


@dataclass(frozen=True)
class RecordFormats:
    """A record's key and value as the registry decoded them (None: not a registry record)."""

    key: Decoded | Undecoded | None = None
    value: Decoded | Undecoded | None = None


async def decode_records(topic: str, records: list[BrowsedRecord]) -> dict[str, RecordFormats]:
    """Each registry-format record's key and value decoded, by its row key."""
    try:
        settings = await asyncio.to_thread(resolve_registry, None)
    except ConfigurationError:  # a broken [schema_registry]: records show as stored
        settings = None
    decoder = RecordDecoder(settings)
    found: dict[str, RecordFormats] = {}
    try:
        for r in records:
            key = await decoder.decode(r.key, topic, is_key=True)
            value = await decoder.decode(r.value, topic)
            if key is not None or value is not None:
                found[f"{r.partition}:{r.offset}"] = RecordFormats(key, value)
    finally:
        await decoder.aclose()
    return found
