"""The hosts' clock: trio's clock, read in integer nanoseconds."""

from __future__ import annotations

import trio

from sbroker._units import NS_PER_SECOND


def now_ns() -> int:
    """The current time of trio's clock in integer nanoseconds.

    The only place the library reads a clock, so ``trio.testing.MockClock``
    drives every host deterministically. Rounding is monotonic, so successive
    readings never decrease.
    """
    return round(trio.current_time() * NS_PER_SECOND)


def to_trio_time(ns: float) -> float:
    """Convert an integer-nanosecond time back to trio's float seconds."""
    return ns / NS_PER_SECOND
