"""The `with` block of the test bed's servers, brokers and sandboxes, written once.

Most test-support classes are used both ways: a test calls `start()` and `stop()` itself
(to restart a broker, say), or a fixture puts them in a `with` block. The block is the same
for all of them, so it lives here; a class whose `with` does more than that (RunningApp also
removes its folder) keeps its own.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Closing", "Started"]


class Started(abc.ABC):
    """`with` calls `start()` and gives the object; leaving the block calls `stop()`."""

    @abc.abstractmethod
    def start(self) -> object:
        """Bring the thing up (what it returns is not used here)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Take it down again; also called when the `with` block raised."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Closing(abc.ABC):
    """Ready once built: `with` gives the object and leaving the block calls `close()`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the constructor took (processes, folders, an event loop)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
