"""What `aerogrid produce` sends for `--format` / `--key-format`: registry records from JSON text.

Everything is checked before the registry is asked and before anything is sent: the
schema file, then every value (the first that does not fit is named, with its field).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings, no_registry
from aerogrid_devkit.registry_records.encode import SchemaFile, ValueMismatch, subject_for
from aerogrid_devkit.registry_records.settings import NAME_A_TOOLS_REGISTRY

__all__ = ["RegistryPart", "encode_records"]


@dataclass(frozen=True)
class RegistryPart:
    """The key or the values of what is produced, in a registry format."""

    schema: SchemaFile
    source: Path
    is_key: bool

    @classmethod
    def load(
        cls, fmt: str, schema: Path | None, message: str | None, *, is_key: bool
    ) -> RegistryPart | None:
        """None for plain `json` (sent as typed); ConfigurationError for a bad combination."""
        flag = "--key-format" if is_key else "--format"
        schema_flag = "--key-schema" if is_key else "--schema"
        if fmt == "json":
            if schema is not None or message is not None:
                raise ConfigurationError(
                    f"{schema_flag} and --message need {flag} avro, json-schema or protobuf"
                )
            return None
        if schema is None:
            raise ConfigurationError(f"{flag} {fmt} needs {schema_flag} FILE")
        if message is not None and fmt != "protobuf":
            raise ConfigurationError(f"--message is for {flag} protobuf")
        return cls(SchemaFile.load(fmt, schema, message), schema, is_key)

    def check(self, texts: Sequence[str]) -> list[Any]:
        """Each text as JSON that fits the schema; ValueError naming the first that does not."""
        what = "key" if self.is_key else "value"
        checked = []
        for number, text in enumerate(texts, 1):
            where = what if len(texts) == 1 else f"{what} {number}"
            try:
                value = json.loads(text)
            except ValueError:
                if not self.is_key:
                    raise ValueError(f"{where} is not JSON: {text[:60]!r}") from None
                value = text  # a plain key is taken as a JSON string
            try:
                self.schema.payload(value)
            except ValueMismatch as exc:
                raise ValueError(
                    f"{where} does not match {self.source.name} at {exc.path}: "
                    f"{str(exc).removeprefix(f'{exc.path}: ')}"
                ) from None
            checked.append(value)
        return checked


async def encode_records(
    registry_settings: RegistrySettings | None,
    topic: str,
    values: tuple[RegistryPart | None, list[bytes]],
    key: tuple[RegistryPart | None, bytes | None],
) -> tuple[list[bytes], bytes | None]:
    """The values and key as sent: registry parts registered and framed, others as given.

    ValueError for a value that does not fit; SchemaRegistryError from the registry.
    """
    value_part, raw_values = values
    key_part, raw_key = key
    checked_values = value_part.check([v.decode() for v in raw_values]) if value_part else []
    checked_key = key_part.check([raw_key.decode()]) if key_part and raw_key is not None else []
    if value_part is None and key_part is None:
        return raw_values, raw_key
    if registry_settings is None:
        raise ConfigurationError(no_registry("registry formats", how=NAME_A_TOOLS_REGISTRY))
    async with SchemaRegistry(registry_settings) as registry:
        if value_part is not None:
            value_id = await value_part.schema.register(registry, subject_for(topic, is_key=False))
            raw_values = [value_part.schema.record(value_id, v) for v in checked_values]
        if key_part is not None and checked_key:
            key_id = await key_part.schema.register(registry, subject_for(topic, is_key=True))
            raw_key = key_part.schema.record(key_id, checked_key[0])
    return raw_values, raw_key
