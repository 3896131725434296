"""The visible rows of a grid in sort order, kept sorted as rows arrive, change and go.

A list sorted incrementally (a binary search and one list insert per moved row) rather
than re-sorted: 1,000 changes a second on 10,000 rows cost microseconds each. Each row's
sort key is unique (the row key breaks ties), so a row can always be found by it.
"""

from __future__ import annotations

import bisect
from typing import Any

__all__ = ["SortKey", "VisibleOrder"]

SortKey = tuple[Any, ...]


class VisibleOrder:
    """Row keys ascending by their sort key; a descending view reads the list backwards."""

    __slots__ = ("_keys", "_sort_keys")

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._sort_keys: dict[str, SortKey] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._sort_keys

    def at(self, index: int, descending: bool) -> str:
        """The key of the `index`th row, in the given direction."""
        return self._keys[-1 - index] if descending else self._keys[index]

    def window(self, start: int, stop: int | None, descending: bool) -> list[str]:
        """The keys of rows `start` to `stop` (a window costs its own length)."""
        keys = self._keys
        count = len(keys)
        stop = count if stop is None else min(stop, count)
        start = max(0, start)
        if start >= stop:
            return []
        if not descending:
            return keys[start:stop]
        return keys[count - start - 1 : (count - stop - 1 if stop < count else None) : -1]

    def index(self, key: str, descending: bool) -> int | None:
        """Where a row is (None when it is not in the order)."""
        sort_key = self._sort_keys.get(key)
        if sort_key is None:
            return None
        index = bisect.bisect_left(self._keys, sort_key, key=self._sort_keys.__getitem__)
        return len(self._keys) - 1 - index if descending else index

    def insert(self, key: str, sort_key: SortKey) -> None:
        self._sort_keys[key] = sort_key
        bisect.insort(self._keys, key, key=self._sort_keys.__getitem__)

    def remove(self, key: str) -> None:
        index = bisect.bisect_left(
            self._keys, self._sort_keys[key], key=self._sort_keys.__getitem__
        )
        del self._keys[index]
        del self._sort_keys[key]

    def reset(self, sort_keys: dict[str, SortKey]) -> None:
        """Replace every row, sorted from scratch (a new sort, filter or snapshot)."""
        self._sort_keys = sort_keys
        self._keys = sorted(sort_keys, key=sort_keys.__getitem__)
