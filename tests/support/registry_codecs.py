"""Driving a registry codec in a test the way the engine does: load what a record needs, decode.

The engine awaits `load(id)` for every id `schema_id_to_load` names before it decodes a
batch; these helpers do the same for one record, so the codec tests of every format
(against the in-memory stand-in or the real registry) exercise the codec as it runs.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from aerogrid.errors import DecodeError
from aerogrid.schemas.codec import RegistryCodec

Codec = TypeVar("Codec", bound=RegistryCodec)


async def loaded(codec: Codec, record: bytes | None) -> Codec:
    """`codec` holding the writer schema `record` needs (and nothing more left to load)."""
    schema_id = codec.schema_id_to_load(record)
    if schema_id is not None:
        await codec.load(schema_id)
    assert codec.schema_id_to_load(record) is None
    return codec


async def decoded(codec: RegistryCodec, record: bytes | None) -> Any:
    """The value of `record`, its writer schema loaded first."""
    return (await loaded(codec, record)).decode(record)


async def assert_decode_errors(codec: RegistryCodec, reasons: dict[bytes, str]) -> None:
    """Every record is a DecodeError whose message matches its reason (a regex)."""
    for record, reason in reasons.items():
        await loaded(codec, record)
        with pytest.raises(DecodeError, match=reason):
            codec.decode(record)
