"""``statistics()`` of brokers and regulators: what a host has done, as frozen values.

Every time field is an ``int`` of nanoseconds; ``str()`` of a record is a small
table with the times in milliseconds, for people.
"""

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

    def __str__(self) -> str:
        rows = [("ask", self.ask), ("ask_r", self.ask_r)]
        return "\n".join([*side_table(rows), host_footer(self.scheduling_lag, self.alarms)])


@attrs.frozen
class RegulatorStatistics:
    """A snapshot of a regulator, from :meth:`sbroker.regulator.Regulator.statistics`.

    Attributes:
        size: permits held now.
        ask: the asks: ``waiting`` now, ``go`` (permits granted) and ``drop``
            (by the queue policy, at the door, by ``nb_ask`` while closed, or
            by closing) since the regulator started, and the percentiles (ns)
            of how long the last granted asks waited.
        scheduling_lag: how late (ns) the background task woke last time.
        alarms: the active alarms.
    """

    size: int
    ask: SideStatistics
    scheduling_lag: int
    alarms: frozenset[str]

    def __str__(self) -> str:
        return "\n".join(
            [
                f"size {self.size}",
                *side_table([("ask", self.ask)]),
                host_footer(self.scheduling_lag, self.alarms),
            ]
        )


@attrs.frozen
class PoolStatistics:
    """A snapshot of a connection pool, from :meth:`sbroker.Pool.statistics`.

    Attributes:
        size: connections open or opening (``idle + in_use + opening``).
        idle: open connections waiting for a client.
        in_use: connections checked out now.
        opening: the rest of ``size``: connections being opened (or backing
            off after a failed connect), checked or closed.
        waiting: clients waiting for a connection.
        go: checkouts granted since the pool opened.
        drop: checkouts dropped (raised :class:`~sbroker.Dropped`).
        checkout_p50, checkout_p90, checkout_p99: nearest-rank percentiles
            (ns) of how long the last granted checkouts waited, ``None``
            before the first.
        connects: connections opened; connect_failures: ``connect()`` calls
            that raised; discarded: connections closed as broken (``discard_on``
            or ``check``).
    """

    size: int
    idle: int
    in_use: int
    opening: int
    waiting: int
    go: int
    drop: int
    checkout_p50: int | None
    checkout_p90: int | None
    checkout_p99: int | None
    connects: int
    connect_failures: int
    discarded: int

    def __str__(self) -> str:
        return "\n".join(
            [
                f"size {self.size}: {self.idle} idle, {self.in_use} in use, "
                f"{self.opening} opening; {self.waiting} clients waiting",
                f"checkouts: {self.go} go, {self.drop} drop; waited p50 "
                f"{format_ms(self.checkout_p50)} ms, p90 {format_ms(self.checkout_p90)} ms, "
                f"p99 {format_ms(self.checkout_p99)} ms",
                f"connections: {self.connects} opened, {self.connect_failures} failed "
                f"connects, {self.discarded} discarded",
            ]
        )


def format_ms(ns: int | None) -> str:
    """A time in ns as milliseconds with two decimals, ``-`` for ``None``."""
    return "-" if ns is None else f"{ns / 1_000_000:.2f}"


def side_table(rows: Iterable[tuple[str, SideStatistics]]) -> list[str]:
    """The lines of a small table: one row per side, sojourn percentiles in ms."""
    lines = [
        f"{'side':<6} {'waiting':>7} {'go':>8} {'drop':>8} {'p50 ms':>9} {'p90 ms':>9} "
        f"{'p99 ms':>9}"
    ]
    for name, side in rows:
        lines.append(
            f"{name:<6} {side.waiting:>7} {side.go:>8} {side.drop:>8} "
            f"{format_ms(side.sojourn_p50):>9} {format_ms(side.sojourn_p90):>9} "
            f"{format_ms(side.sojourn_p99):>9}"
        )
    return lines


def host_footer(scheduling_lag: int, alarms: frozenset[str]) -> str:
    """The last line of a host's table: scheduling lag in ms and the active alarms."""
    active = ", ".join(sorted(alarms)) or "none"
    return f"scheduling lag {format_ms(scheduling_lag)} ms; alarms: {active}"


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
