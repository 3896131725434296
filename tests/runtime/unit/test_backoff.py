"""The one retry delay policy (`aerogrid.backoff`): bounds, growth, cap, reset, jitter."""

from __future__ import annotations

import pytest

from aerogrid.backoff import Backoff


def _ceilings(initial: float, maximum: float, factor: float, n: int) -> list[float]:
    return [min(maximum, initial * factor**i) for i in range(n)]


def test_every_delay_lies_within_its_jittered_band_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0, factor=2.0, jitter=0.5)
    for _ in range(200):  # many runs: the draws are random
        backoff.reset()
        for ceiling in _ceilings(0.1, 2.0, 2.0, 10):
            delay = backoff.next_delay()
            assert ceiling * 0.5 <= delay <= ceiling


def test_without_jitter_the_delays_are_exactly_the_capped_curve() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0, factor=3.0, jitter=0.0)
    delays = [backoff.next_delay() for _ in range(5)]
    assert delays == [0.5, 1.5, 3.0, 3.0, 3.0]


def test_reset_starts_the_curve_over() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_jitter_spreads_the_delays_of_retries_that_start_together() -> None:
    """Many clients at the same attempt do not all wait the same time."""
    delays = {Backoff(initial=1.0, maximum=1.0, jitter=0.5).next_delay() for _ in range(100)}
    assert len(delays) > 90
    assert max(delays) - min(delays) > 0.25  # of a possible 0.5


def test_the_delays_can_be_iterated() -> None:
    it = iter(Backoff(initial=1.0, maximum=4.0, jitter=0.0))
    assert [next(it) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"maximum": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)
