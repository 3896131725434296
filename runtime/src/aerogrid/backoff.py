"""The one retry delay policy: exponential, capped, with full jitter.

Jitter matters more than the curve: when a broker or server comes back, every client
that lost it retries, and without jitter they all retry at the same instants.
`stamina` (tenacity's successor) was considered; its decorator form retries a call,
while most loops here retry a long-lived stream or a reconnect whose failure is not an
exception of one call, so a delay iterator fits them better than a decorator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive retries; `reset()` after a success."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    #: Each delay is drawn from [delay * (1 - jitter), delay].
    jitter: float = 0.5
    _attempt: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.maximum >= 0 and self.factor >= 1):
            raise ValueError(
                f"Backoff needs initial >= 0, maximum >= 0 and factor >= 1, not "
                f"initial={self.initial}, maximum={self.maximum}, factor={self.factor}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff jitter is a fraction in [0, 1], not {self.jitter}")

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self._attempt)
        self._attempt += 1
        return ceiling * (1.0 - self.jitter * random.random())

    def reset(self) -> None:
        self._attempt = 0

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next_delay()
