"""One cell of a grid as the TUI shows it: its text, its alignment and its sort order."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["format_cell", "is_numeric", "natural", "sort_value"]

#: Characters that would break a one-line cell, shown as visible stand-ins instead.
_CONTROL = {i: " " for i in range(32)} | {0x7F: " "}
_DIGITS = re.compile(r"(\d+)")


def format_cell(value: Any) -> str:
    """A cell as one line of text: what is drawn, measured and filtered on."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.translate(_CONTROL)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value).translate(_CONTROL)


def is_numeric(value: Any) -> bool:
    """Numbers are right-aligned."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def natural(text: str) -> tuple[str | int, ...]:
    """`item-9` before `item-10`: digit runs compare as numbers, the rest case-blind.

    `re.split` with a group always alternates text and digits starting with text, so two
    such tuples compare str with str and int with int, position by position.
    """
    parts = _DIGITS.split(text.casefold())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def sort_value(value: Any) -> tuple[int, Any]:
    """A total order over every cell type: numbers, then times, then text, then blanks.

    Numbers of any type compare by value (not as text); NaN and None sort last; a rank
    first keeps values of different types from ever being compared with each other.
    """
    if value is None:
        return (4, 0)
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int):
        return (0, value)
    if isinstance(value, float):
        return (4, 0) if math.isnan(value) else (0, value)
    if isinstance(value, Decimal):
        return (4, 0) if value.is_nan() else (0, value)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    if isinstance(value, date):
        return (1, datetime(value.year, value.month, value.day).timestamp())
    if isinstance(value, str):
        return (2, natural(value))
    return (3, repr(value))
