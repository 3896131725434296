"""Which cells of a grid changed lately, and how bright their change flash still is."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["Flashes"]


class Flashes:
    """When each cell last changed, by row key and column, forgotten once faded.

    Each change is queued once, oldest first, so expiring costs only the changes that
    faded since the last call, never a scan of every row.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lit: dict[str, dict[int, float]] = {}
        self._queue: deque[tuple[float, str, int]] = deque()

    def __contains__(self, key: object) -> bool:
        """Whether any cell of the row has a flash that `expire()` has not ended yet."""
        return key in self._lit

    def level(self, key: str, column: int, now: float) -> float:
        """How bright a cell's change flash is: 1.0 just changed, 0.0 not (any more)."""
        cells = self._lit.get(key)
        if cells is None:
            return 0.0
        changed = cells.get(column)
        if changed is None:
            return 0.0
        return min(1.0, max(0.0, 1.0 - (now - changed) / self.seconds))

    def light(self, key: str, columns: Iterable[int], now: float) -> int:
        """Light these cells of a row as changed at `now`; returns how many."""
        cells = self._lit.setdefault(key, {})
        count = 0
        for column in columns:
            cells[column] = now
            self._queue.append((now, key, column))
            count += 1
        if not cells:
            del self._lit[key]
        return count

    def forget(self, key: str) -> None:
        """The row is gone: nothing of it flashes any more."""
        self._lit.pop(key, None)

    def clear(self) -> None:
        self._lit.clear()
        self._queue.clear()

    def expire(self, now: float) -> list[str]:
        """End the flashes that have faded; returns the rows that stopped flashing."""
        horizon = now - self.seconds
        queue, ended = self._queue, []
        while queue and queue[0][0] <= horizon:
            changed, key, column = queue.popleft()
            cells = self._lit.get(key)
            if cells is not None and cells.get(column) == changed:
                del cells[column]
                if not cells:
                    del self._lit[key]
                    ended.append(key)
        return ended
