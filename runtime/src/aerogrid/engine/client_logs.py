"""Keeps the Kafka client's log readable: repeats held back, silence during an outage.

aiokafka logs every failed connection attempt and request, about 30 ERROR lines a
second while a broker is down, which buries the one line that matters. This filter sits
on aiokafka's loggers: in normal operation a given message (logger and format string) is
let through once per `window` seconds, and the next one that passes says how many were
held back; during an outage (`outage(True)`, set by the engine's broker watch, which
logs one line per state change and a periodic summary itself) every warning and error
from the client is held back and only counted.
"""

from __future__ import annotations

import logging
import time

from aerogrid import metrics

CLIENT_LOGGER = "aiokafka"


class ClientLogGate(logging.Filter):
    """Rate-limits the Kafka client's warnings and errors (see the module docstring)."""

    def __init__(self, window: float = 30.0) -> None:
        super().__init__()
        self.window = window
        self._outage = False
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}
        #: Lines held back since the last `take_held()` (for the outage summary).
        self.held_since_summary = 0

    def outage(self, active: bool) -> None:
        self._outage = active
        if not active:
            self._last.clear()

    def take_held(self) -> int:
        held, self.held_since_summary = self.held_since_summary, 0
        return held

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if not self._outage and now - self._last.get(key, -self.window) >= self.window:
            self._last[key] = now
            held = self._held.pop(key, 0)
            if held:
                record.msg = f"{record.msg} ({held} similar lines held back)"
            return True
        self._held[key] = self._held.get(key, 0) + 1
        self.held_since_summary += 1
        metrics.CLIENT_LOG_SUPPRESSED.labels(record.levelname.lower()).inc()
        return False


GATE = ClientLogGate()


def install() -> ClientLogGate:
    """Attach the gate to every aiokafka logger (filters do not apply to child loggers)."""
    manager = logging.getLogger().manager
    names = [n for n in list(manager.loggerDict) if n.split(".")[0] == CLIENT_LOGGER]
    for name in [CLIENT_LOGGER, *names]:
        logger = logging.getLogger(name)
        if GATE not in logger.filters:
            logger.addFilter(GATE)
    return GATE
