"""`avro_schema`: the Avro schema of a Record class, derived from its annotations.

The Record is the reader schema of an Avro topic (and the writer schema of what the app
sends), so it is derived, not written by hand: str → string, int → long, float → double,
bool → boolean, bytes → bytes, Decimal → bytes/decimal, datetime → long/timestamp-micros,
date → int/date, UUID → string/uuid, Optional[T] → ["null", T], list[T] (set, tuple)
→ array, dict[str, T] → map, an Enum of str → enum, a Literal → string or long, a nested
Record → a record. Field defaults become Avro defaults, so other readers of what the
app sends resolve an older writer too.

Decimal precision and scale: `Annotated[Decimal, msgspec.Meta(extra={"precision": 18,
"scale": 2})]`; without them decimal(38, 9). On decode the writer's scale wins (the value
is exact either way). Timestamps in milliseconds: `Annotated[datetime,
msgspec.Meta(extra={"timestamp": "millis"})]` (a writer's millis decode either way).
Names: the class name in the module's namespace, or a full name in the class attribute
`__avro_name__ = "com.acme.Order"`.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal
from typing import Any

import msgspec
import msgspec.inspect as mi

from aerogrid.errors import ConfigurationError
from aerogrid.records import Record

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_PRECISION = 38
DEFAULT_SCALE = 9
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
_MILLISECOND = dt.timedelta(milliseconds=1)
_MICROSECOND = dt.timedelta(microseconds=1)

#: Top-level key or value types that are Avro primitives.
_PRIMITIVES: dict[Any, str] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
}


def avro_full_name(record_cls: type[Record]) -> str:
    """The Avro full name (`namespace.Name`) of a Record class."""
    explicit = getattr(record_cls, "__avro_name__", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    return f"{record_cls.__module__}.{record_cls.__name__}"


def avro_schema(declared: Any) -> dict[str, Any] | str:
    """The Avro schema of a Record class (a dict) or of a primitive key/value type (a name)."""
    if declared in _PRIMITIVES:
        return _PRIMITIVES[declared]
    if not (isinstance(declared, type) and issubclass(declared, Record)):
        raise ConfigurationError(
            f"format='avro' needs a Record subclass, dict, str, int, float, bool or bytes, "
            f"not {declared!r}"
        )
    schema = _Deriver(declared).schema(mi.type_info(declared), "$")
    assert isinstance(schema, dict)
    return schema


class _Deriver:
    """Walks msgspec's type info; each named record is defined once, then referenced."""

    def __init__(self, root: type[Record]) -> None:
        self.root = root
        self.defined: set[str] = set()
        #: Each record's schema by full name, for defaults that hold a named record.
        self.named: dict[str, Any] = {}

    def schema(self, info: Any, path: str) -> Any:
        extra: dict[str, Any] = {}
        if isinstance(info, mi.Metadata):
            extra = info.extra or {}
            info = info.type
        if isinstance(info, mi.StrType):
            return "string"
        if isinstance(info, mi.BoolType):
            return "boolean"
        if isinstance(info, mi.IntType):
            return "long"
        if isinstance(info, mi.FloatType):
            return "double"
        if isinstance(info, mi.BytesType | mi.ByteArrayType):
            return "bytes"
        if isinstance(info, mi.DecimalType):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": int(extra.get("precision", DEFAULT_PRECISION)),
                "scale": int(extra.get("scale", DEFAULT_SCALE)),
            }
        if isinstance(info, mi.DateTimeType):
            unit = extra.get("timestamp", "micros")
            if unit not in ("micros", "millis"):
                raise self._unsupported(path, f"timestamp {unit!r} is not 'micros' or 'millis'")
            return {"type": "long", "logicalType": f"timestamp-{unit}"}
        if isinstance(info, mi.DateType):
            return {"type": "int", "logicalType": "date"}
        if isinstance(info, mi.UUIDType):
            return {"type": "string", "logicalType": "uuid"}
        if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            return {"type": "array", "items": self.schema(info.item_type, f"{path}[]")}
        if isinstance(info, mi.EnumType):
            return self._enum(info.cls, path)
        if isinstance(info, mi.LiteralType):
            kinds = {type(v) for v in info.values}
            if kinds == {str}:
                return "string"
            if kinds == {int}:
                return "long"
            raise self._unsupported(path, "a Literal's values must all be str or all int")
        if isinstance(info, mi.DictType):
            if not isinstance(info.key_type, mi.StrType):
                raise self._unsupported(path, "a dict's keys must be str for an Avro map")
            return {"type": "map", "values": self.schema(info.value_type, f"{path}{{}}")}
        if isinstance(info, mi.UnionType):
            others = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(others) != 1 or len(others) == len(info.types):
                raise self._unsupported(path, "only Optional[T] unions are supported")
            return ["null", self.schema(others[0], path)]
        if isinstance(info, mi.StructType):
            return self._record(info, path)
        raise self._unsupported(path, f"{type(info).__name__} has no Avro form here")

    def _record(self, info: mi.StructType, path: str) -> Any:
        if not issubclass(info.cls, Record):
            raise self._unsupported(path, "nested types must be Records")
        full_name = avro_full_name(info.cls)
        if full_name in self.defined:
            return full_name
        self.defined.add(full_name)
        namespace, _, name = full_name.rpartition(".")
        fields = []
        for field in info.fields:
            field_path = f"{path}.{field.encode_name}"
            field_schema = self.schema(field.type, field_path)
            entry: dict[str, Any] = {"name": field.encode_name, "type": field_schema}
            if not field.required:
                default = _default_of(field)
                if default is None and isinstance(field_schema, list):
                    entry["default"] = None
                elif default is not None:
                    if isinstance(field_schema, list):  # the default's branch goes first
                        entry["type"] = [field_schema[1], "null"]
                    entry["default"] = _avro_default(default, entry["type"], self.named)
            fields.append(entry)
        record: dict[str, Any] = {"type": "record", "name": name, "fields": fields}
        if namespace:
            record["namespace"] = namespace
        self.named[full_name] = record
        return record

    def _enum(self, cls: type[enum.Enum], path: str) -> Any:
        """An Enum of str values that are Avro names: an Avro enum of those values."""
        symbols = [member.value for member in cls]
        if not all(isinstance(v, str) and _AVRO_NAME.fullmatch(v) for v in symbols):
            raise self._unsupported(
                path, f"{cls.__name__}'s values must be Avro names ([A-Za-z_][A-Za-z0-9_]*)"
            )
        full_name = f"{cls.__module__}.{cls.__name__}"
        if full_name in self.defined:
            return full_name
        self.defined.add(full_name)
        return {
            "type": "enum",
            "name": cls.__name__,
            "namespace": cls.__module__,
            "symbols": symbols,
        }

    def _unsupported(self, path: str, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self.root.__name__}: field {path} cannot be an Avro type: {why}"
        )


def _default_of(field: mi.Field) -> Any:
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return field.default


def _avro_default(value: Any, schema: Any, named: dict[str, Any]) -> Any:
    """`value` in the JSON form Avro defaults take for `schema` (its first union branch)."""
    if isinstance(schema, list):
        schema = schema[0]
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    spec: dict[str, Any] = schema if isinstance(schema, dict) else {}
    if isinstance(value, Record):
        fields = {f["name"]: f["type"] for f in spec.get("fields", ())}
        return {
            name: _avro_default(v, fields.get(name), named) for name, v in _encoded_items(value)
        }
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, Decimal) and spec.get("logicalType") == "decimal":
        unscaled = int(value.scaleb(spec["scale"]).to_integral_value())
        size = max(1, (unscaled.bit_length() + 8) // 8)
        return unscaled.to_bytes(size, "big", signed=True).decode("latin-1")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        unit = _MILLISECOND if spec.get("logicalType") == "timestamp-millis" else _MICROSECOND
        return (moment - _EPOCH) // unit
    if isinstance(value, dt.date):
        return (value - _EPOCH_DATE).days
    if isinstance(value, list | set | frozenset | tuple):
        return [_avro_default(v, spec.get("items"), named) for v in value]
    if isinstance(value, dict):
        return {k: _avro_default(v, spec.get("values"), named) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # UUID and the like: their string form


def _encoded_items(record: Record) -> list[tuple[str, Any]]:
    names = type(record).__struct_encode_fields__
    return [
        (enc, getattr(record, attr))
        for enc, attr in zip(names, record.__struct_fields__, strict=True)
    ]
