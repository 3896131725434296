"""Key and value codecs: how a topic's declared types become bytes and back."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.records import Record

#: The types a topic's key or value may be declared as.
SUPPORTED_TYPES = "str, bytes, int, dict (JSON) or an aerogrid.Record subclass"


class Codec(Protocol):
    """Turns a declared key or value type into bytes and back."""

    def encode(self, value: Any) -> bytes | None: ...

    def decode(self, data: bytes | None) -> Any: ...


class StrCodec:
    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes | None) -> str | None:
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not valid UTF-8 text: {exc}") from None


class BytesCodec:
    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes | None) -> bytes | None:
        return data


class IntCodec:
    """Integers as their decimal text, the form console tools produce and read."""

    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected int, got {type(value).__name__}")
        return str(value).encode()

    def decode(self, data: bytes | None) -> int | None:
        if data is None:
            return None
        try:
            return int(data.decode().strip())
        except (UnicodeDecodeError, ValueError):
            raise DecodeError(f"not an integer: {data[:40]!r}") from None


class JsonCodec:
    """Any JSON value (declared as `dict`): the record must be a JSON object."""

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(dict[str, Any])
        self._encoder = msgspec.json.Encoder()

    def encode(self, value: Any) -> bytes | None:
        return None if value is None else self._encoder.encode(value)

    def decode(self, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"expected a JSON object: {exc}", field="$") from None
        except msgspec.DecodeError as exc:
            raise DecodeError(str(exc)) from None


class RecordCodec:
    """A Record as a JSON object; type errors name the field (`$.quantity`)."""

    def __init__(self, record_type: type[Record]) -> None:
        self.record_type = record_type
        self._decoder = msgspec.json.Decoder(record_type)
        self._encoder = msgspec.json.Encoder()

    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, dict):
            value = msgspec.convert(value, self.record_type)
        if not isinstance(value, self.record_type):
            raise TypeError(f"expected {self.record_type.__name__}, got {type(value).__name__}")
        return self._encoder.encode(value)

    def decode(self, data: bytes | None) -> Record | None:
        if data is None:
            raise DecodeError(
                f"{self.record_type.__name__}: the record has no value (a tombstone); "
                "declare value_type=bytes or dict to receive tombstones"
            )
        try:
            decoded: Record = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            text = str(exc)
            field = text.rsplit(" - at ", 1)[1].strip("`") if " - at " in text else None
            if field is None and "missing required field" in text:
                field = "$." + text.rsplit("`", 2)[1]
            raise DecodeError(f"{self.record_type.__name__}: {text}", field=field) from None
        except msgspec.DecodeError as exc:
            raise DecodeError(f"{self.record_type.__name__}: {exc}") from None
        return decoded


def codec_for(declared: Any) -> Codec:
    """The codec of a declared key or value type, or a ConfigurationError."""
    if declared is str:
        return StrCodec()
    if declared is bytes:
        return BytesCodec()
    if declared is int:
        return IntCodec()
    if declared is dict:
        return JsonCodec()
    if isinstance(declared, type) and issubclass(declared, Record):
        return RecordCodec(declared)
    raise ConfigurationError(f"unsupported key or value type {declared!r}: use {SUPPORTED_TYPES}")
