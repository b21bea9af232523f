"""Reconnect backoff of the client: 1 s, x1.6, +-20 % jitter, at most 120 s (issue 10)."""

from __future__ import annotations

import random

import pytest

from sbroker.client import Backoff


def test_delays_grow_by_the_factor_within_the_jitter_up_to_the_maximum() -> None:
    backoff = Backoff(rng=random.Random(7))
    base = 1.0
    for _ in range(20):
        delay = backoff.next_delay()
        assert base * 0.8 <= delay <= base * 1.2
        base = min(base * 1.6, 120.0)
    assert base == 120.0  # reached the cap within 20 failures


def test_jitter_spreads_the_delays() -> None:
    delays = {Backoff(rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20 and min(delays) < 0.95 and max(delays) > 1.05


def test_reset_starts_from_the_initial_delay() -> None:
    backoff = Backoff(jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([1.0, 1.6, 2.56])
    backoff.reset()
    assert backoff.next_delay() == 1.0


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 200.0}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Backoff(**kwargs)
