"""``Broker.statistics()``: what a broker has done, as frozen values."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import attrs

#: How many recent matches per side the sojourn percentiles look at.
RECENT_MATCHES = 1024


@attrs.frozen
class SideStatistics:
    """One side (``ask`` or ``ask_r``) of a broker.

    Attributes:
        waiting: requests waiting in this side's queue now.
        go: requests of this side answered ``Go`` since the broker started (each
            match answers one request of each side, so both sides show the same).
        drop: requests of this side answered ``Drop`` since the broker
            started (by the queue policy, at the door, by ``nb_*`` calls with
            nobody waiting, or by closing).
        sojourn_p50, sojourn_p90, sojourn_p99: nearest-rank percentiles (ns)
            of the sojourn times of this side's last matches (at most
            ``RECENT_MATCHES``), ``None`` before the first match.
    """

    waiting: int
    go: int
    drop: int
    sojourn_p50: int | None
    sojourn_p90: int | None
    sojourn_p99: int | None


@attrs.frozen
class BrokerStatistics:
    """A snapshot of a broker, from :meth:`sbroker.Broker.statistics`.

    Attributes:
        ask, ask_r: per-side figures.
        scheduling_lag: how late (ns) the background task woke at its last
            wake-up: the event loop's congestion as the meters see it.
        alarms: the active alarms.
    """

    ask: SideStatistics
    ask_r: SideStatistics
    scheduling_lag: int
    alarms: frozenset[str]


def percentile(ordered: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of an ascending list, ``None`` if empty."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * round(fraction * 1000) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def side_statistics(waiting: int, go: int, drop: int, recent: Iterable[int]) -> SideStatistics:
    """Summarise one side's counters and recent sojourn times."""
    ordered = sorted(recent)
    return SideStatistics(
        waiting,
        go,
        drop,
        percentile(ordered, 0.5),
        percentile(ordered, 0.9),
        percentile(ordered, 0.99),
    )


def recent_window() -> deque[int]:
    """A bounded buffer of recent sojourn times."""
    return deque(maxlen=RECENT_MATCHES)
