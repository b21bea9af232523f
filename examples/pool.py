"""A connection pool that grows and shrinks with its load: a broker plus a regulator.

Workers each hold a (simulated) connection. A worker may only exist while it
holds a permit from a :class:`~sbroker.regulator.Regulator`; once connected it
offers itself to clients with ``broker.ask_r(conn)``. Clients call
``broker.ask(job)`` and are matched with an idle worker, which serves the job.

The broker carries an :class:`~sbroker.meters.UpdateMeter` that sends its
``ask_r`` relative time to the regulator about every 50 ms: positive while idle
workers wait for clients, negative while clients wait for workers. The valve
(a :class:`~sbroker.regulator.RelativeValve` by default) opens whenever that
value is below its target, and a spawner task, forever asking the regulator for
permits, starts one more worker per opening: the pool grows. A worker whose
``ask_r`` times out (no client came) asks ``regulator.continue_(ref)``; while
idle workers are plentiful the valve is closed and it answers ``Stop``: the
worker closes its connection and the pool shrinks.

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
from sbroker import Drop, Go, NotFound, Stop
from sbroker.meters import UpdateMeter
from sbroker.queues import CodelQueue, QueuePolicy, TimeoutQueue
from sbroker.regulator import CodelValve, RelativeValve, Valve, open_regulator

MS = 1_000_000  # ns per millisecond

#: The default load: ``(time_s, clients_per_s)`` points, linear in between.
#: Quiet, a ramp up to a peak, the peak held, a ramp down, quiet again.
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
class Job:
    """What a client asks with: how long serving it takes, and a signal when it is done."""

    service_time: float
    finished: trio.Event = field(default_factory=trio.Event)


@dataclass
class Connection:
    """The resource a worker holds (here only a name)."""

    number: int
    jobs: int = 0


@dataclass(frozen=True)
class Row:
    """One line of the timeline, sampled every ``sample_every`` seconds."""

    time: float
    rate: float
    size: int  # regulator.size(): permits held = workers alive
    idle: int  # broker.len_r(): workers waiting for a client
    waiting: int  # broker.len(): clients waiting for a worker
    served: int  # clients served so far
    dropped: int  # clients dropped so far


@dataclass
class Report:
    """What :func:`run_pool` observed."""

    rows: list[Row] = field(default_factory=list)
    sojourns_ns: list[int] = field(default_factory=list)  # served clients' waits
    served: int = 0
    dropped: int = 0
    workers_started: int = 0
    workers_stopped: int = 0  # told Stop by continue_: the regulator released the permit
    workers_cancelled: int = 0  # cancelled at shutdown: released by done()
    bad_releases: int = 0  # done() answered False or continue_ NotFound: should stay 0
    # Samples where size() was not the number of workers holding permits, give or
    # take the one permit the regulator may have granted to the spawner's waiting
    # ask without the spawner having run since to start its worker.
    mismatches: int = 0
    size_after_shutdown: int = -1  # regulator.size() once every worker has exited
    holders_after_shutdown: int = -1  # workers still holding a permit then (none)

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0..100, nearest rank) of the served clients' sojourns."""
        if not self.sojourns_ns:
            return math.nan
        ordered = sorted(self.sojourns_ns)
        rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
        return ordered[rank] / MS

    def format(self) -> str:
        lines = [" time   rate/s  pool  idle  waiting   served  dropped"]
        for row in self.rows:
            lines.append(
                f"{row.time:5.1f}  {row.rate:6.0f}  {row.size:4d}  {row.idle:4d}  "
                f"{row.waiting:7d}  {row.served:7d}  {row.dropped:7d}"
            )
        lines.append(
            f"clients: {self.served} served, {self.dropped} dropped; sojourn "
            f"p50 {self.percentile_ms(50):.1f} ms, p90 {self.percentile_ms(90):.1f} ms, "
            f"p99 {self.percentile_ms(99):.1f} ms"
        )
        lines.append(
            f"workers: {self.workers_started} started, {self.workers_stopped} stopped by "
            f"the valve, {self.workers_cancelled} cancelled at the end; "
            f"permits left after shutdown: {self.size_after_shutdown}"
        )
        return "\n".join(lines)


def make_valve(name: str = "relative") -> Valve:
    """The pool's valve: 2 to 32 workers, growing while the relative time is below 5 ms.

    ``"relative"`` opens once per update below target; ``"codel"`` only once
    updates have stayed below target for 100 ms, then faster and faster.
    """
    if name == "relative":
        return RelativeValve(target=0.005, min_size=2, max_size=32)
    if name == "codel":
        return CodelValve(target=0.005, interval=0.1, min_size=2, max_size=32)
    raise ValueError(f"valve must be 'relative' or 'codel', got {name!r}")


async def run_pool(
    *,
    profile: Sequence[tuple[float, float]] = DEFAULT_PROFILE,
    valve: Valve | None = None,
    client_queue: QueuePolicy | None = None,
    worker_idle: float = 0.5,
    connect_time: float = 0.05,
    service_time: float = 0.025,
    update: float = 0.05,
    sample_every: float = 0.5,
    seed: int = 1,
    abort_after: float | None = None,
) -> Report:
    """Run the pool under the load ``profile`` and report what happened.

    Args:
        profile: ``(time_s, clients_per_s)`` points; the run lasts until the last.
        valve: the regulator's valve (default ``make_valve()``).
        client_queue: the broker's ``ask`` policy (default ``CodelQueue(0.01, 0.1)``).
        worker_idle: seconds an idle worker waits for a client before it asks
            the regulator whether to continue (the ``ask_r`` TimeoutQueue).
        connect_time: seconds a new worker takes to open its connection.
        service_time: mean seconds (exponential) to serve a job.
        update: the UpdateMeter's period for the regulator, seconds.
        sample_every: seconds between timeline rows.
        seed: seeds the arrivals, the service times and the meter's jitter.
        abort_after: if given, cancel clients, workers and spawner abruptly
            after this many seconds (mid-service), instead of letting the
            clients finish.
    """
    rng = random.Random(seed)
    report = Report()
    holders: set[object] = set()  # permits held by live workers
    numbers = itertools.count(1)
    duration = profile[-1][0]
    peak = max(rate for _, rate in profile)

    async with open_regulator(
        queue=TimeoutQueue(timeout=None),  # the spawner's ask waits until the valve opens
        valve=make_valve() if valve is None else valve,
    ) as regulator:
        meter = UpdateMeter([(regulator, "ask_r", update)], rng=random.Random(seed))
        async with sbroker.open_broker(
            ask=CodelQueue(target=0.01, interval=0.1) if client_queue is None else client_queue,
            ask_r=TimeoutQueue(timeout=worker_idle, out="lifo"),
            meters=[meter],
        ) as broker:

            async def worker(permit: Go) -> None:
                ref = permit.ref  # the spawner has put it in holders
                conn = Connection(next(numbers))
                try:
                    await trio.sleep(connect_time)  # open the connection
                    while True:
                        match await broker.ask_r(conn):
                            case Go(value=Job() as job):
                                await trio.sleep(job.service_time)  # serve the client
                                conn.jobs += 1
                                job.finished.set()
                            case Drop():  # no client came: should the pool shrink?
                                match regulator.continue_(ref):
                                    case Go():
                                        pass  # keep the connection, offer it again
                                    case Stop():
                                        holders.discard(ref)  # the permit is released
                                        report.workers_stopped += 1
                                        return
                                    case NotFound():
                                        holders.discard(ref)
                                        report.bad_releases += 1
                                        return
                finally:
                    if ref in holders:  # cancelled or failed while holding the permit
                        holders.discard(ref)
                        if regulator.done(ref):  # synchronous: safe in a cancelled task
                            report.workers_cancelled += 1
                        else:
                            report.bad_releases += 1

            async def spawner(nursery: trio.Nursery) -> None:
                """Keep asking for permits; each one granted starts a worker."""
                while True:
                    result = await regulator.ask()
                    if isinstance(result, Go):
                        holders.add(result.ref)
                        report.workers_started += 1
                        nursery.start_soon(worker, result)

            async def client(job: Job) -> None:
                result = await broker.ask(job)
                if isinstance(result, Go):
                    report.served += 1
                    report.sojourns_ns.append(result.sojourn_time)
                    await job.finished.wait()
                else:
                    report.dropped += 1

            async def load(nursery: trio.Nursery) -> None:
                """Poisson arrivals at ``rate_at(t)``: thinning of a ``peak`` process."""
                start = trio.current_time()
                t = 0.0
                while True:
                    t += rng.expovariate(peak)  # absolute times: no drift on a real clock
                    if t >= duration:
                        return
                    await trio.sleep_until(start + t)
                    job = Job(rng.expovariate(1 / service_time))
                    if rng.random() * peak < rate_at(profile, t):
                        nursery.start_soon(client, job)

            async def monitor() -> None:
                start = trio.current_time()
                t = sample_every
                while t <= duration + 1e-9:
                    await trio.sleep_until(start + t)
                    size = regulator.size()
                    if not len(holders) <= size <= len(holders) + 1:
                        report.mismatches += 1
                    report.rows.append(
                        Row(
                            round(t, 3),
                            rate_at(profile, t),
                            size,
                            broker.len_r(),
                            broker.len(),
                            report.served,
                            report.dropped,
                        )
                    )
                    t += sample_every

            with trio.move_on_after(math.inf if abort_after is None else abort_after):
                async with trio.open_nursery() as pool:
                    pool.start_soon(spawner, pool)
                    async with trio.open_nursery() as clients:
                        clients.start_soon(load, clients)
                        clients.start_soon(monitor)
                    pool.cancel_scope.cancel()  # every client is done: shut the pool down
            # Every worker has exited: each permit was released by Stop or done().
            report.size_after_shutdown = regulator.size()
            report.holders_after_shutdown = len(holders)
    return report


def main(argv: Sequence[str] | None = None) -> Report:
    """Parse the command line, run the pool, print the timeline and the percentiles."""
    parser = argparse.ArgumentParser(description="A regulated connection pool under load.")
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
