"""A connection pool under a load that rises and falls: ``sbroker.open_pool`` at work.

Clients arrive (Poisson, at a rate that follows a profile: quiet, a ramp up to
a peak, the peak held, a ramp down, quiet again), check a connection out of
the pool, run a query on it (exponential service time) and give it back. The
connections are simulated: opening one takes ``connect_time``.

The pool grows while clients wait for connections (its regulator's valve
opens on the broker's relative time) and shrinks when connections sit idle
(idle holders are told ``Stop``); clients that would wait too long are
dropped early by the pool's queue. Every ``sample_every`` seconds a row of
``pool.statistics()`` is recorded.

Run it: ``python examples/pool.py`` (MockClock, a few seconds of wall time) or
``python examples/pool.py --real-time`` (about 12 s on the real clock).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
import trio.testing

import sbroker
from sbroker.queues import AdaptiveQueue, QueuePolicy
from sbroker.regulator import CodelValve, RelativeValve, Valve

NS_PER_S = 1_000_000_000
MS = 1_000_000  # ns per millisecond

#: The default load: ``(time_s, clients_per_s)`` points, linear in between.
DEFAULT_PROFILE: tuple[tuple[float, float], ...] = (
    (0.0, 20.0),
    (2.0, 20.0),
    (4.0, 400.0),
    (7.0, 400.0),
    (9.0, 20.0),
    (12.0, 20.0),
)


def rate_at(profile: Sequence[tuple[float, float]], t: float) -> float:
    """The arrival rate at ``t``, interpolated linearly between the profile's points."""
    if t <= profile[0][0]:
        return profile[0][1]
    for (t0, r0), (t1, r1) in itertools.pairwise(profile):
        if t <= t1:
            return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)
    return profile[-1][1]


@dataclass
class Connection:
    """A simulated database connection."""

    number: int
    queries: int = 0
    closed: bool = False


@dataclass
class FakeDatabase:
    """Opens connections after ``connect_time`` seconds and keeps count."""

    connect_time: float
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    open: set[int] = field(default_factory=set)
    opened: int = 0
    closed: int = 0

    async def connect(self) -> Connection:
        await trio.sleep(self.connect_time)
        conn = Connection(next(self.numbers))
        self.open.add(conn.number)
        self.opened += 1
        return conn

    async def close(self, conn: Connection) -> None:
        conn.closed = True
        self.open.discard(conn.number)
        self.closed += 1


@dataclass(frozen=True)
class Row:
    """One line of the timeline, sampled every ``sample_every`` seconds."""

    time: float
    rate: float
    size: int  # connections open or opening
    idle: int  # connections waiting for a client
    waiting: int  # clients waiting for a connection
    served: int  # clients served so far
    dropped: int  # clients dropped so far


@dataclass
class Report:
    """What :func:`run_pool` observed."""

    rows: list[Row] = field(default_factory=list)
    sojourns_ns: list[int] = field(default_factory=list)  # how long served clients waited
    served: int = 0
    dropped: int = 0
    opened: int = 0  # connections opened
    closed: int = 0  # connections closed
    open_after_shutdown: int = -1  # connections still open once the pool has closed
    final: sbroker.PoolStatistics | None = None  # pool.statistics() at the end

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0..100, nearest rank) of the served clients' waits."""
        if not self.sojourns_ns:
            return math.nan
        ordered = sorted(self.sojourns_ns)
        rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
        return ordered[rank] / MS

    def format(self) -> str:
        """The timeline, the waits' percentiles and the connection counts, as text."""
        lines = [" time   rate/s  pool  idle  waiting   served  dropped"]
        for row in self.rows:
            lines.append(
                f"{row.time:5.1f}  {row.rate:6.0f}  {row.size:4d}  {row.idle:4d}  "
                f"{row.waiting:7d}  {row.served:7d}  {row.dropped:7d}"
            )
        lines.append(
            f"clients: {self.served} served, {self.dropped} dropped; waited "
            f"p50 {self.percentile_ms(50):.1f} ms, p90 {self.percentile_ms(90):.1f} ms, "
            f"p99 {self.percentile_ms(99):.1f} ms"
        )
        lines.append(
            f"connections: {self.opened} opened, {self.closed} closed; "
            f"open after shutdown: {self.open_after_shutdown}"
        )
        return "\n".join(lines)


def make_valve(name: str = "relative") -> Valve:
    """The pool's valve (the pool sets its min_size and max_size).

    ``"relative"`` adds a connection per update while clients wait;
    ``"codel"`` only once clients have waited for 100 ms, then faster and faster.
    """
    if name == "relative":
        return RelativeValve(target=0)
    if name == "codel":
        return CodelValve(target=0, interval=0.1)
    raise ValueError(f"valve must be 'relative' or 'codel', got {name!r}")


async def run_pool(
    *,
    profile: Sequence[tuple[float, float]] = DEFAULT_PROFILE,
    valve: Valve | None = None,
    queue: QueuePolicy | None = None,
    min_size: int = 2,
    max_size: int = 32,
    connect_time: float = 0.05,
    service_time: float = 0.025,
    sample_every: float = 0.5,
    seed: int = 1,
    abort_after: float | None = None,
) -> Report:
    """Run the pool under the load ``profile`` and report what happened.

    Args:
        profile: ``(time_s, clients_per_s)`` points; the run lasts until the last.
        valve: the pool's valve (default ``make_valve()``).
        queue: the clients' queue policy (default
            ``AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0)``).
        min_size, max_size: the pool's bounds.
        connect_time: seconds opening a connection takes.
        service_time: mean seconds (exponential) a client holds its connection.
        sample_every: seconds between timeline rows.
        seed: seeds the arrivals, the service times and the pool's jitter.
        abort_after: if given, cancel everything abruptly after this many
            seconds (mid-checkout), instead of letting the clients finish.
    """
    rng = random.Random(seed)
    report = Report()
    database = FakeDatabase(connect_time)
    duration = profile[-1][0]
    peak = max(rate for _, rate in profile)

    async with sbroker.open_pool(
        database.connect,
        database.close,
        queue=AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0) if queue is None else queue,
        valve=make_valve() if valve is None else valve,
        min_size=min_size,
        max_size=max_size,
        rng=random.Random(seed),
    ) as pool:

        async def client(hold: float) -> None:
            start = trio.current_time()
            try:
                async with pool.checkout() as conn:
                    report.sojourns_ns.append(round((trio.current_time() - start) * NS_PER_S))
                    await trio.sleep(hold)  # the query
                    conn.queries += 1
            except sbroker.Dropped:
                report.dropped += 1
            else:
                report.served += 1

        async def load(nursery: trio.Nursery) -> None:
            """Poisson arrivals at ``rate_at(t)``: thinning of a ``peak`` process."""
            start = trio.current_time()
            t = 0.0
            while True:
                t += rng.expovariate(peak)  # absolute times: no drift on a real clock
                if t >= duration:
                    return
                await trio.sleep_until(start + t)
                hold = rng.expovariate(1 / service_time)
                if rng.random() * peak < rate_at(profile, t):
                    nursery.start_soon(client, hold)

        async def monitor() -> None:
            start = trio.current_time()
            t = sample_every
            while t <= duration + 1e-9:
                await trio.sleep_until(start + t)
                stats = pool.statistics()
                report.rows.append(
                    Row(
                        round(t, 3),
                        rate_at(profile, t),
                        stats.size,
                        stats.idle,
                        stats.waiting,
                        report.served,
                        report.dropped,
                    )
                )
                t += sample_every

        with trio.move_on_after(math.inf if abort_after is None else abort_after):
            async with trio.open_nursery() as clients:
                clients.start_soon(load, clients)
                clients.start_soon(monitor)
        report.final = pool.statistics()
    report.opened, report.closed = database.opened, database.closed
    report.open_after_shutdown = len(database.open)
    return report


def main(argv: Sequence[str] | None = None) -> Report:
    """Parse the command line, run the pool, print the timeline and the percentiles."""
    parser = argparse.ArgumentParser(description="A connection pool under a varying load.")
    parser.add_argument(
        "--real-time", action="store_true", help="run on the real clock (about 12 s)"
    )
    parser.add_argument(
        "--valve", choices=["relative", "codel"], default="relative", help="the pool's valve"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the load (default 1)")
    args = parser.parse_args(argv)
    clock = None if args.real_time else trio.testing.MockClock(autojump_threshold=0)
    run = functools.partial(run_pool, valve=make_valve(args.valve), seed=args.seed)
    report = trio.run(run, clock=clock)
    print(report.format())
    return report


__all__ = ["Report", "Row", "main", "make_valve", "rate_at", "run_pool"]

if __name__ == "__main__":
    main()
