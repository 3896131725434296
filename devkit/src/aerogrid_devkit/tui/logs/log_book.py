"""`LogBook`: the recent output of every app and of the loop, bounded, read in batches."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LogBook", "LogEntry"]


@dataclass(frozen=True)
class LogEntry:
    """One line of output and who wrote it (an app, or the loop itself)."""

    source: str
    line: str


class LogBook:
    """The recent output of every app and of the loop, bounded, with change counts.

    Lines arrive at any rate (a sink on the loop); views read what is new since they
    last looked, by sequence number, so none of them is called per line.
    """

    def __init__(self, maxlen: int = 20_000) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=maxlen)
        #: Lines ever added; the newest entry has sequence number `total - 1`.
        self.total = 0

    def add(self, source: str, line: str) -> None:
        self._entries.append(LogEntry(source, line))
        self.total += 1

    def since(self, seen: int) -> tuple[list[LogEntry], int]:
        """Entries added after the first `seen` ones (those still kept), and the new total."""
        new = min(self.total - seen, len(self._entries))
        if new <= 0:
            return [], self.total
        count = len(self._entries)
        return [self._entries[i] for i in range(count - new, count)], self.total

    def __len__(self) -> int:
        return len(self._entries)
