"""Every record decoder, on any bytes: a value or a DecodeError, never another exception.

Hypothesis drives each decoder (str, int, bytes, dict and Record codecs; the changelog's
key and row decoders) with arbitrary bytes and with JSON that is almost right: invalid
UTF-8 inside strings, deep nesting, repeated keys, wrong types. A fixed, derandomized
example budget keeps the run short and the same every time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import aerogrid
from aerogrid.engine import changelog
from aerogrid.errors import DecodeError
from aerogrid.limits import MAX_DEPTH, MAX_RECORD_BYTES
from aerogrid.record_formats import codec_for, json_too_deep

BUDGET = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Line(aerogrid.Record):
    sku: str
    price: Decimal


class Order(aerogrid.Record):
    product: str
    quantity: int


class Rich(aerogrid.Record):
    """Every field kind a Record supports, including ones whose nesting is unbounded."""

    product: str
    quantity: int
    note: str | None = None
    placed: dt.datetime | None = None
    lines: list[Line] = []
    meta: dict[str, Any] = {}
    tags: list[Any] = []
    weight: float = 0.0


_APP = aerogrid.App("property", broker="localhost:1")
_GRID = _APP.Grid("g", columns=["n", "price", "when", "label"], default={"label": "x"})

DECODERS: dict[str, Callable[[bytes | None], Any]] = {
    "str": codec_for(str).decode,
    "int": codec_for(int).decode,
    "bytes": codec_for(bytes).decode,
    "dict": codec_for(dict).decode,
    "Order": codec_for(Order).decode,
    "Rich": codec_for(Rich).decode,
    "changelog key": changelog.decode_key,
    "changelog row": changelog.row_decoder(_GRID),
}

# -- strategies --------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
#: Fields of Order, Rich and Line, of the changelog grid, its tags, and one nobody knows.
_FIELDS = "product quantity note placed lines meta tags weight sku price n when label junk"
_field_names = st.sampled_from([*_FIELDS.split(), "$decimal", "$datetime"])
_objects = st.dictionaries(_field_names, _json, max_size=6).map(lambda d: json.dumps(d).encode())


@st.composite
def _with_bad_utf8(draw: st.DrawFn) -> bytes:
    """A JSON object whose string values hold bytes that are not UTF-8."""
    data = draw(_objects)
    bad = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90"]))
    name = draw(_field_names).encode()
    return data[:-1] + (b", " if len(data) > 2 else b"") + b'"' + name + b'": "' + bad + b'"}'


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    """Nesting past any bound, in a field the type reads or one it ignores."""
    depth = draw(st.integers(min_value=MAX_DEPTH - 2, max_value=3000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    name = draw(_field_names).encode()
    nested = opener * depth + b"1" + closer * depth
    return b'{"product": "p", "quantity": 1, "' + name + b'": ' + nested + b"}"


_anything = st.one_of(st.binary(max_size=200), _objects, _with_bad_utf8(), _deep())


# -- the property ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DECODERS))
@BUDGET
@given(data=_anything)
@example(data=b'{"product": "\xff\xfe", "quantity": 1}')
@example(data=b'{"product": "p", "quantity": 1, "junk": ' + b"[" * 1000 + b"]" * 1000 + b"}")
@example(data=b'{"n": {"$decimal": "nope"}}')
@example(data=b'{"n": {"$datetime": 5}}')
@example(data=b'{"n": {"$decimal": [1]}}')
@example(data=b"1" * 5000)
@example(data=b"")
def test_a_decoder_raises_only_decode_error(name: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODERS[name](data)


@pytest.mark.parametrize("name", ["str", "int", "bytes", "dict", "Order", "Rich"])
def test_a_record_over_the_size_limit_is_a_decode_error(name: str) -> None:
    data = b'"' + b"1" * MAX_RECORD_BYTES + b'"'
    with pytest.raises(DecodeError, match=rf"record {len(data)} bytes > limit"):
        DECODERS[name](data)


# -- the depth bound ---------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    """An Order whose `meta` field makes the whole record `depth` levels deep."""
    inner = b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1)
    return b'{"product": "p", "quantity": 1, "meta": ' + inner + b"}"


@pytest.mark.parametrize("name", ["dict", "Rich"])
def test_nesting_is_bounded_where_it_reaches_the_app(name: str) -> None:
    assert DECODERS[name](_nested(MAX_DEPTH)) is not None
    with pytest.raises(DecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        DECODERS[name](_nested(MAX_DEPTH + 1))


def test_a_closed_record_skips_what_it_ignores_and_refuses_runaway_nesting() -> None:
    """Order's fields bound its depth; deep JSON in an unknown field ends in a DecodeError."""
    assert DECODERS["Order"](_nested(MAX_DEPTH + 1)) == Order(product="p", quantity=1)
    with pytest.raises(DecodeError, match="nested deeper than"):
        DECODERS["Order"](_nested(5000))


@BUDGET
@given(value=_json)
def test_the_depth_scan_agrees_with_the_parsed_depth(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(i) for i in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(i) for i in v.values()), default=0)
        return 0

    data = json.dumps(value).encode()
    found = depth(value)
    assert json_too_deep(data, limit=found) is False
    if found:
        assert json_too_deep(data, limit=found - 1) is (len(data) > 2 * (found - 1))


def test_brackets_inside_strings_do_not_count() -> None:
    data = json.dumps({"text": "[" * 500 + '\\"{' * 300}).encode()
    assert json_too_deep(data) is False
    assert DECODERS["dict"](data) == {"text": "[" * 500 + '\\"{' * 300}


# -- repeated keys: the last one wins, documented in the README -------------------------


def test_a_repeated_key_keeps_its_last_value() -> None:
    data = b'{"product": "a", "quantity": 1, "product": "b", "quantity": 2}'
    assert DECODERS["Order"](data) == Order(product="b", quantity=2)
    assert DECODERS["dict"](data) == {"product": "b", "quantity": 2}
