"""The last line of defence against a crash loop: a record that killed the app twice is skipped.

Bad records raise exceptions, and those are caught per record. But a record can also
kill the process outright (a segfault in a C extension, memory exhausted, user code
calling `os._exit`), and then every restart meets it again. So before handing records
to the handlers the engine notes here which ones they are, and clears the note once they
are processed; the note lives in a small file that outlives the process
(`AEROGRID_STATE_DIR`, else the temp folder: an `emptyDir` that survives container
restarts in the cluster).

On start, a note left "processing" means the process died in the handlers:

* it died in a batch: each record of that batch has one strike; the engine then hands
  those records to the handlers one at a time, noting each before it runs;
* it died on one record already struck: that record crashed the app twice, and it is
  dead-lettered with the reason "crashed the app twice" instead of run again.

An app killed from outside (SIGKILL, a node drained) dies almost always while it
writes or commits, not in the microseconds a handler takes, so a good record is not
skipped by bad luck: it would take two such kills inside that same record's handler.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

log = logging.getLogger("aerogrid.engine")

STATE_DIR_ENV = "AEROGRID_STATE_DIR"

#: (topic, partition) → (first offset, last offset) of the records in the handlers.
Ranges = dict[tuple[str, int], tuple[int, int]]


class _Note(msgspec.Struct):
    #: "processing" while records are in the handlers, "done" after.
    phase: str
    #: topic, partition, first offset, last offset.
    ranges: list[tuple[str, int, int, int]] = []
    #: True when the records were handed over one at a time (`ranges` holds one).
    single: bool = False


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Note).decode


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path(tempfile.gettempdir()) / "aerogrid-state")


@dataclass
class CrashJournal:
    """What the handlers are working on, kept where a crash cannot erase it."""

    path: Path
    #: Records struck once (they were in a batch when the app died): run one at a time.
    suspects: Ranges = field(default_factory=dict)
    #: Records that crashed the app twice: dead-letter instead of running them.
    quarantined: set[tuple[str, int, int]] = field(default_factory=set)
    _fd: int = -1
    _size: int = 0

    @classmethod
    def open(cls, app_name: str) -> CrashJournal:
        """Read what the last run left, then start this run's note."""
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        journal = cls(folder / f"{app_name}.inflight")
        journal._recover()
        journal._fd = os.open(journal.path, os.O_RDWR | os.O_CREAT, 0o600)
        journal._write(_Note("done"))
        return journal

    def _recover(self) -> None:
        try:
            note = _decode(self.path.read_bytes().strip() or b"{}")
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError, ValueError) as exc:
            log.warning("ignoring an unreadable crash journal %s: %s", self.path, exc)
            return
        if note.phase != "processing":
            return
        if note.single and note.ranges:
            topic, partition, offset, _ = note.ranges[0]
            self.quarantined.add((topic, partition, offset))
            log.error(
                "record %s[%d]@%d crashed the app twice; it is dead-lettered instead of run",
                topic,
                partition,
                offset,
            )
            return
        self.suspects = {(t, p): (first, last) for t, p, first, last in note.ranges}
        log.warning(
            "the app died while its handlers ran %s; those records now run one at a time, "
            "and one that kills the app again is dead-lettered",
            ", ".join(f"{t}[{p}]@{a}..{b}" for (t, p), (a, b) in self.suspects.items()),
        )

    def is_suspect(self, topic: str, partition: int, offset: int) -> bool:
        span = self.suspects.get((topic, partition))
        return span is not None and span[0] <= offset <= span[1]

    def processing(self, ranges: Ranges, *, single: bool = False) -> None:
        """Note the records about to enter the handlers."""
        self._write(
            _Note("processing", [(t, p, a, b) for (t, p), (a, b) in ranges.items()], single)
        )

    def done(self) -> None:
        """The noted records left the handlers (whatever happens next is not theirs)."""
        self._write(_Note("done"))

    def passed(self, topic: str, partition: int, offset: int) -> None:
        """Forget a suspect range once the app read past it."""
        span = self.suspects.get((topic, partition))
        if span is not None and offset > span[1]:
            del self.suspects[(topic, partition)]

    def close(self) -> None:
        """A clean stop: nothing was in the handlers."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)

    def _write(self, note: _Note) -> None:
        # One pwrite over the same bytes each time: no rename, no fsync (a process crash
        # keeps the page cache; a machine crash loses only this protection, never data).
        # Trailing spaces pad a shorter note; JSON ignores them.
        data = _encode(note)
        if len(data) > self._size:
            self._size = max(512, 2 * len(data))
            os.ftruncate(self._fd, self._size)
        os.pwrite(self._fd, data.ljust(self._size), 0)
