"""Record formats: how a topic's declared key and value types become record bytes and back.

This module serves the SDK and the engine: a topic picks its key's and value's `Codec`
with `codec_for`, and the processor decodes every input record with it. It is the home
of every record format (a new one is one more `Codec` and one more case in `codec_for`;
the registry formats, Avro, Protobuf and JSON Schema, are `aerogrid.schemas`' codecs);
what the grid server sends is `aerogrid.server.messages`, and a grid's changelog record
is `aerogrid.engine.changelog`.

A decoder's only error is DecodeError, whatever the bytes: invalid UTF-8 anywhere, JSON
nested past MAX_DEPTH, a record over MAX_RECORD_BYTES, or anything msgspec raises. The
engine turns it into a per-record error (rolled back, dead-lettered, counted), so no
record can stop an app. The bounds cost one length comparison on the common record.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import msgspec.inspect

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.limits import MAX_DEPTH, MAX_RECORD_BYTES
from aerogrid.records import Record
from aerogrid.schemas.codec import REGISTRY_FORMATS, RegistryCodec, registry_codec
from aerogrid.schemas.registry_settings import no_registry

if TYPE_CHECKING:
    from aerogrid.schemas.registry import SchemaRegistry

#: The types a topic's key or value may be declared as.
SUPPORTED_TYPES = "str, bytes, int, dict (JSON) or an aerogrid.Record subclass"
#: AeroGrid's own format: text, decimal integers, raw bytes or JSON, by the declared type.
PLAIN_FORMAT = "json"
#: Every format: ours, then those in the Confluent wire format with a schema registry.
FORMATS = (PLAIN_FORMAT, *REGISTRY_FORMATS)

# JSON strings (escapes included), and every byte but brackets: what the depth scan skips.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENERS = frozenset(b"[{")
#: JSON this short cannot nest deeper than MAX_DEPTH (each level takes two bytes).
_SHALLOW_BYTES = 2 * MAX_DEPTH


class Codec(Protocol):
    """Turns a declared key or value type into bytes and back."""

    def encode(self, value: Any) -> bytes | None: ...

    def decode(self, data: bytes | None) -> Any: ...


def json_too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON `data` nests arrays and objects deeper than `limit`.

    Cheap for most records: fewer than 2 × limit bytes, or no more than `limit` opening
    brackets, cannot nest deeper; only other records are scanned (strings skipped).
    """
    if len(data) <= 2 * limit or data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _too_big(data: bytes) -> DecodeError:
    return DecodeError(f"record {len(data)} bytes > limit {MAX_RECORD_BYTES} bytes")


def _check_bounds(data: bytes, what: str, *, depth: bool) -> None:
    """Size, then (for values whose nesting reaches the app) depth: a DecodeError if over."""
    if len(data) > MAX_RECORD_BYTES:
        raise _too_big(data)
    if depth and json_too_deep(data):
        raise DecodeError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels")


def json_error(exc: Exception, what: str) -> DecodeError:
    """The DecodeError for what msgspec raised decoding or converting a value, with the field.

    The one place a field's path (`$.lines[0].qty`) is read out of msgspec's message:
    every record format (JSON, Avro, Protobuf and JSON Schema Records) names it so.
    """
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        field = None
        if " - at " in text:
            field = text.rsplit(" - at ", 1)[1].strip("`")
        elif "missing required field `" in text:
            field = "$." + text.rsplit("missing required field `", 1)[1].rstrip("`")
        return DecodeError(f"{what}: {text}", field=field)
    if isinstance(exc, msgspec.DecodeError):
        return DecodeError(f"{what}: {text}")
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError(f"{what}: a JSON string is not valid UTF-8 ({exc.reason})")
    if isinstance(exc, RecursionError):
        return DecodeError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    return DecodeError(f"{what}: {type(exc).__name__}: {text}")


def _unbounded_nesting(declared: Any) -> bool:
    """Whether decoded values of `declared` can nest without bound (Any, or recursion).

    Only those need the depth scan: a closed type (like `Order`) bounds its own depth,
    and deep JSON in fields it ignores ends at msgspec's recursion guard, a DecodeError.
    """

    def walk(info: Any, path: frozenset[int]) -> bool:
        if isinstance(info, msgspec.inspect.AnyType) or id(info) in path:
            return True
        path = path | {id(info)}
        children: list[Any] = []
        for attr in ("item_type", "key_type", "value_type", "type"):
            child = getattr(info, attr, None)
            if isinstance(child, msgspec.inspect.Type):
                children.append(child)
        for attr in ("types", "item_types"):
            children.extend(getattr(info, attr, ()))
        children.extend(f.type for f in getattr(info, "fields", ()))
        return any(walk(child, path) for child in children)

    return walk(msgspec.inspect.type_info(declared), frozenset())


def tombstone_error(record_type: type[Record]) -> DecodeError:
    """Why a record without a value (a tombstone) cannot be a Record, in every format."""
    return DecodeError(
        f"{record_type.__name__}: the record has no value (a tombstone); "
        "declare value_type=bytes or dict to receive tombstones"
    )


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
        if len(data) > MAX_RECORD_BYTES:
            raise _too_big(data)
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
        if data is not None and len(data) > MAX_RECORD_BYTES:
            raise _too_big(data)
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
        if len(data) > MAX_RECORD_BYTES:
            raise _too_big(data)
        try:
            return int(data.decode().strip())
        except ValueError:  # UnicodeDecodeError, not digits, over 4,300 digits
            raise DecodeError(f"not an integer: {data[:40]!r}") from None


class JsonCodec:
    """Any JSON value (declared as `dict`): the record must be a JSON object.

    A key repeated in one object keeps its last value (msgspec's rule, as in most JSON
    parsers); it is not an error.
    """

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(dict[str, Any])
        self._encoder = msgspec.json.Encoder()

    def encode(self, value: Any) -> bytes | None:
        return None if value is None else self._encoder.encode(value)

    def decode(self, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        if len(data) > _SHALLOW_BYTES:
            _check_bounds(data, "JSON", depth=True)
        try:
            decoded: dict[str, Any] = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"expected a JSON object: {exc}", field="$") from None
        except Exception as exc:
            raise json_error(exc, "JSON") from None
        return decoded


class RecordCodec:
    """A Record as a JSON object; type errors name the field (`$.quantity`).

    A key repeated in the object keeps its last value, as for `dict`.
    """

    def __init__(self, record_type: type[Record]) -> None:
        self.record_type = record_type
        self._decoder = msgspec.json.Decoder(record_type)
        self._encoder = msgspec.json.Encoder()
        # Records of a closed type are only size-checked: see _unbounded_nesting.
        self._depth_checked = _unbounded_nesting(record_type)
        self._check_above = _SHALLOW_BYTES if self._depth_checked else MAX_RECORD_BYTES

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
            raise tombstone_error(self.record_type)
        if len(data) > self._check_above:
            _check_bounds(data, self.record_type.__name__, depth=self._depth_checked)
        try:
            decoded: Record = self._decoder.decode(data)
        except Exception as exc:
            raise json_error(exc, self.record_type.__name__) from None
        return decoded


def check_format(format: str) -> None:
    """A ConfigurationError unless `format` is one a topic's key or value may use."""
    if format not in FORMATS:
        raise ConfigurationError(
            f"unknown record format {format!r}: use {', '.join(repr(f) for f in FORMATS)}"
        )


def codec_for(
    declared: Any,
    format: str = PLAIN_FORMAT,
    *,
    registry: SchemaRegistry | None = None,
    topic: str = "",
    is_key: bool = False,
    strategy: str = "topic",
) -> Codec:
    """The codec of a declared key or value type in `format`, or a ConfigurationError.

    A registry format needs the app's schema registry client: its codec registers and
    fetches writer schemas (`aerogrid.schemas`), under the subject `strategy` names.
    """
    check_format(format)
    if format != PLAIN_FORMAT:
        return registry_codec_for(
            declared, format, registry=registry, topic=topic, is_key=is_key, strategy=strategy
        )
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


def registry_codec_for(
    declared: Any,
    format: str,
    *,
    registry: SchemaRegistry | None,
    topic: str,
    is_key: bool = False,
    strategy: str = "topic",
) -> RegistryCodec:
    """The codec of a registry format (`aerogrid.schemas`), or a ConfigurationError."""
    if registry is None:
        raise ConfigurationError(no_registry(f"topic {topic!r} (format {format!r})"))
    return registry_codec(
        format, declared, registry=registry, topic=topic, is_key=is_key, strategy=strategy
    )
