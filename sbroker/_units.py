"""Time units: configuration in seconds, everything inside in integer nanoseconds.

This module is free of I/O and of trio, so sans-I/O policies can use it.
"""

from __future__ import annotations

NS_PER_SECOND = 1_000_000_000


def to_ns(seconds: float) -> int:
    """Convert a configuration duration in seconds to integer nanoseconds (queues.md §0)."""
    return round(seconds * NS_PER_SECOND)


def optional_ns(seconds: float | None) -> int | None:
    """:func:`to_ns`, keeping ``None`` (infinity) as ``None``."""
    return None if seconds is None else to_ns(seconds)
