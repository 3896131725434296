"""The Docker image pull's progress as a few readable lines, for `aerogrid broker up`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aerogrid_devkit.brokers.base import BrokerError

__all__ = ["PullProgress", "split_image"]


def split_image(image: str) -> tuple[str, str]:
    """("apache/kafka", "4.4.0") from "apache/kafka:4.4.0" (a registry port is no tag)."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


_QUIET_PULL_STEPS = ("Pulling fs layer", "Waiting", "Verifying Checksum", "Extracting")


class PullProgress:
    """Turns the pull's JSON events into a few readable lines (a line per layer step, and
    the download total at most every two seconds)."""

    def __init__(self, image: str, emit: Callable[[str], None]) -> None:
        self.image = image
        self.emit = emit
        self.sizes: dict[str, tuple[int, int]] = {}
        self.last = 0.0

    def follow(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            if "error" in event:
                raise BrokerError(f"cannot pull {self.image}: {event['error']}")
            status = str(event.get("status", ""))
            layer = str(event.get("id", ""))
            detail = event.get("progressDetail") or {}
            if status == "Downloading" and detail.get("total"):
                self.sizes[layer] = (int(detail.get("current", 0)), int(detail["total"]))
                now = time.monotonic()
                if now - self.last >= 2.0:
                    self.last = now
                    done = sum(c for c, _ in self.sizes.values()) / 1e6
                    total = sum(t for _, t in self.sizes.values()) / 1e6
                    self.emit(f"  downloading {self.image}: {done:.0f} of {total:.0f} MB")
            elif status in ("Download complete", "Pull complete", "Already exists"):
                if layer in self.sizes:
                    self.sizes[layer] = (self.sizes[layer][1], self.sizes[layer][1])
            elif status and status not in _QUIET_PULL_STEPS:
                self.emit(f"  {status}" + (f" ({layer})" if layer else ""))
