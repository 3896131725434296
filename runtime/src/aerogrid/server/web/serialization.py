"""How a message is written on the web wires: protobuf binary or JSON (a content type's codec)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Final, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from aerogrid.server.errors import Code
from aerogrid.server.web.protocol_error import ProtocolError

__all__ = ["JSON", "PROTO", "Serialization", "json_transcoder"]

_M = TypeVar("_M", bound=Message)


class Serialization:
    """One codec: `proto` (binary) or `json` (protobuf's canonical JSON mapping)."""

    def __init__(self, name: Literal["proto", "json"]) -> None:
        self.name = name

    def decode(self, message_type: type[_M], data: bytes) -> _M:
        """The message in `data`; a ProtocolError (invalid_argument) when it does not parse."""
        message = message_type()
        try:
            if self.name == "proto":
                message.ParseFromString(data)
            else:
                json_format.Parse(data.decode("utf-8"), message, ignore_unknown_fields=True)
        except Exception as exc:  # protobuf raises several types for bad input
            name = message_type.DESCRIPTOR.full_name
            raise ProtocolError(
                Code.INVALID_ARGUMENT,
                f"cannot decode {self.name} {name}: {exc}",
                refused="malformed",
            ) from None
        return message

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString() if self.name == "proto" else json_bytes(message)


PROTO: Final = Serialization("proto")
JSON: Final = Serialization("json")


def json_bytes(message: Message) -> bytes:
    value = json_format.MessageToDict(message)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_JSON_CACHE_MAX_BYTES: Final = 64 * 1024


def json_transcoder(message_type: type[Message]) -> Callable[[bytes], bytes]:
    """Serialized -> JSON for streams (which yield bytes), caching small messages (shared
    deltas), not big snapshots."""

    def transcode(data: bytes) -> bytes:
        return json_bytes(message_type.FromString(data))

    cached = lru_cache(maxsize=128)(transcode)

    def to_json(data: bytes) -> bytes:
        return cached(data) if len(data) <= _JSON_CACHE_MAX_BYTES else transcode(data)

    return to_json
