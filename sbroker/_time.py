"""The hosts' clock: trio's clock, read in integer nanoseconds."""

from __future__ import annotations

import trio

from sbroker._units import NS_PER_SECOND

#: The hot paths read a host's clock as ``round_float(clock.current_time() * NS_PER_SECOND_F)``:
#: the same int as ``round(seconds * NS_PER_SECOND)`` (the product is a float either way),
#: with no int-to-float conversion and no ``__round__`` lookup per reading.
NS_PER_SECOND_F = float(NS_PER_SECOND)
round_float = float.__round__


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
