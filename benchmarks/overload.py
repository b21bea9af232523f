"""Overload: what happens to waiting times when clients arrive faster than workers serve.

W = 4 workers each take 10 ms per request (capacity 400 requests/s). Clients
arrive as an open-loop Poisson process (they keep coming whatever happens to
earlier ones) for 10 s at 0.8x, 1.2x, 2x and 4x that capacity, and each client
waits for a worker under one strategy:

- a zero-buffer trio memory channel (clients ``send``, workers ``receive``),
  with unbounded waiting or with a 1 s client timeout (``move_on_after``);
- a broker whose ask queue is TimeoutQueue, CodelQueue (alone, with
  ``max_len``, or with a PieMeter), AdaptiveQueue (fifo or adaptive) or a
  FairQueue of CoDel sub-queues keyed by client.

The arrivals come from 10 clients: one greedy client with 10 shares of the
load and nine well-behaved ones with 1 share each (the superposition is one
Poisson stream, identical for every strategy at a given load). Every run
happens under ``trio.testing.MockClock(autojump_threshold=0)``, so simulated
time is free and results are deterministic for a seed; runs continue after the
arrivals stop until every client has its answer.

Per strategy and load the table shows: the fraction of requests served;
worker utilisation while clients arrive (busy worker-time in the arrival
window / (W x window)); p50/p99/max wait of served requests (the broker's
``Go.sojourn_time``; for the channel, from the start of ``send`` to the
``receive``); the mean wait of dropped requests; and the smallest served
fraction among the well-behaved clients. Target checks are printed below the
tables.

    python benchmarks/overload.py [--quick] [--loads 1.2 2] [--seconds 10] [--write-docs]

It exits with status 1 when a target check fails. The plot of the served waits
is written only on request: ``--write-docs`` updates the tracked
docs/img/overload.png, ``--plot PATH`` writes it elsewhere.

This prints figures; it is not a test (tests/test_overload_benchmark.py runs a
tiny configuration to keep it working).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import trio
import trio.testing

from sbroker import Go, open_broker
from sbroker.meters import PieMeter
from sbroker.queues import AdaptiveQueue, CodelQueue, QueuePolicy, TimeoutQueue

try:
    from sbroker.queues import FairQueue
except ImportError:  # pragma: no cover - while the re-export is not there yet
    from sbroker.queues.fair import FairQueue

WORKERS = 4
SERVICE = 0.010  # seconds per request
CAPACITY = WORKERS / SERVICE  # requests per second
SHARES = (10,) + (1,) * 9  # client 0 is greedy: 10x the rate of each other client
LOADS = (0.8, 1.2, 2.0, 4.0)
NS = 1_000_000_000
MS = 1_000_000
DOCS_PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "overload.png"

# --------------------------------------------------------------------------
# Arrivals and the record of one run


def arrivals(load: float, seconds: float, seed: int) -> tuple[array[float], array[int]]:
    """Arrival times (s, from 0) and client ids of a Poisson stream at ``load`` x capacity.

    Each arrival belongs to client ``i`` with probability ``SHARES[i] / sum(SHARES)``,
    so client ``i`` alone is a Poisson process at its share of the rate.
    """
    rng = random.Random(f"overload-{seed}-{load}")
    rate = load * CAPACITY
    weights = [share / sum(SHARES) for share in SHARES]
    cumulative = [sum(weights[: i + 1]) for i in range(len(weights))]
    times: array[float] = array("d")
    clients: array[int] = array("i")
    t = rng.expovariate(rate)
    while t < seconds:
        u = rng.random()
        client = next((i for i, c in enumerate(cumulative) if u < c), len(SHARES) - 1)
        times.append(t)
        clients.append(client)
        t += rng.expovariate(rate)
    return times, clients


class Run:
    """What one strategy did at one load. Waits are integer nanoseconds."""

    def __init__(
        self, name: str, load: float, seconds: float, clients: Sequence[int], seed: int = 1
    ) -> None:
        self.name = name
        self.seed = seed
        self.load = load
        self.seconds = seconds
        self.offered = len(clients)
        self.offered_by_client = [0] * len(SHARES)
        for client in clients:
            self.offered_by_client[client] += 1
        self.served_by_client = [0] * len(SHARES)
        self.waits: array[int] = array("q")  # served requests' waits, ns
        self.served_at: array[float] = array("d")  # their arrival times, s
        self.served_client: array[int] = array("b")  # and clients
        self.dropped = 0
        self.dropped_wait = 0  # total, ns
        self.busy = 0.0  # worker-seconds inside the arrival window
        self.start = 0.0  # trio time of the first arrival slot
        self.elapsed = 0.0  # wall-clock seconds the run took

    # -- recording (called per request: keep it cheap) ---------------------------

    def served(self, client: int, sent: float, wait_ns: int) -> None:
        self.served_by_client[client] += 1
        self.waits.append(wait_ns)
        self.served_at.append(sent - self.start)
        self.served_client.append(client)

    def drop(self, wait_ns: int) -> None:
        self.dropped += 1
        self.dropped_wait += wait_ns

    async def serve(self) -> None:
        """A worker serves one request: sleep ``SERVICE`` and count the busy time."""
        begin = trio.current_time() - self.start
        await trio.sleep(SERVICE)
        self.busy += max(0.0, min(begin + SERVICE, self.seconds) - max(begin, 0.0))

    # -- figures -----------------------------------------------------------------

    @property
    def served_fraction(self) -> float:
        return len(self.waits) / self.offered if self.offered else math.nan

    @property
    def dropped_fraction(self) -> float:
        return self.dropped / self.offered if self.offered else math.nan

    @property
    def utilisation(self) -> float:
        return self.busy / (WORKERS * self.seconds)

    def percentile_ms(self, fraction: float, waits: Sequence[int] | None = None) -> float:
        """Nearest-rank ``fraction`` quantile of the served waits (or ``waits``), in ms."""
        ordered = sorted(self.waits if waits is None else waits)
        if not ordered:
            return math.nan
        rank = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[rank] / MS

    def late_p99_ms(self) -> float:
        """p99 wait of the served requests that arrived in the second half of the window."""
        half = self.seconds / 2
        return self.percentile_ms(
            0.99, [w for w, at in zip(self.waits, self.served_at, strict=True) if at >= half]
        )

    def client_p99_ms(self, greedy: bool) -> float:
        """p99 wait of the greedy client's (or the well-behaved clients') served requests."""
        return self.percentile_ms(
            0.99,
            [w for w, c in zip(self.waits, self.served_client, strict=True) if (c == 0) == greedy],
        )

    @property
    def mean_drop_wait_ms(self) -> float:
        return self.dropped_wait / self.dropped / MS if self.dropped else math.nan

    def client_fractions(self) -> list[float]:
        return [
            s / o if o else math.nan
            for s, o in zip(self.served_by_client, self.offered_by_client, strict=True)
        ]

    @property
    def well_behaved_min(self) -> float:
        """The smallest served fraction among the well-behaved clients (1..9)."""
        return min(self.client_fractions()[1:])


# --------------------------------------------------------------------------
# The harness shared by every strategy

Client = Callable[[int], Awaitable[None]]


async def drive(
    run: Run,
    times: Sequence[float],
    clients: Sequence[int],
    client: Client,
    worker: Callable[[], Awaitable[None]],
) -> None:
    """Start the workers, spawn one ``client(id)`` task per arrival, wait for all answers."""
    async with trio.open_nursery() as nursery:
        for _ in range(WORKERS):
            nursery.start_soon(worker)
        run.start = start = trio.current_time()
        async with trio.open_nursery() as arrivals_nursery:
            spawn = arrivals_nursery.start_soon
            for at, who in zip(times, clients, strict=True):
                await trio.sleep_until(start + at)
                spawn(client, who)
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# The strategies: each gets the run to record into and the arrivals


async def memory_channel(
    run: Run, times: Sequence[float], clients: Sequence[int], timeout: float | None = None
) -> None:
    """Workers ``receive`` from a zero-buffer channel; clients ``send``, maybe with a timeout."""
    send, receive = trio.open_memory_channel[tuple[int, float]](0)

    async def worker() -> None:
        async for who, sent in receive:
            run.served(who, sent, round((trio.current_time() - sent) * NS))
            await run.serve()

    async def client(who: int) -> None:
        sent = trio.current_time()
        if timeout is None:
            await send.send((who, sent))
            return
        with trio.move_on_after(timeout):
            await send.send((who, sent))
            return
        run.drop(round((trio.current_time() - sent) * NS))

    await drive(run, times, clients, client, worker)


async def memory_channel_timeout(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    """The memory channel with ``trio.move_on_after(1.0)`` around each client's send."""
    await memory_channel(run, times, clients, timeout=1.0)


async def broker_run(
    run: Run,
    times: Sequence[float],
    clients: Sequence[int],
    ask: QueuePolicy,
    meters: Sequence[object] = (),
) -> None:
    """Clients ``ask(client_id)``; workers loop on ``ask_r`` (waiting forever), then serve."""
    async with open_broker(
        ask=ask,
        ask_r=TimeoutQueue(timeout=None),
        meters=meters,  # type: ignore[arg-type]
    ) as broker:

        async def worker() -> None:
            while True:
                if isinstance(await broker.ask_r(), Go):
                    await run.serve()

        async def client(who: int) -> None:
            sent = trio.current_time()
            result = await broker.ask(who)
            if isinstance(result, Go):
                run.served(who, sent, result.sojourn_time)
            else:
                run.drop(result.sojourn_time)

        await drive(run, times, clients, client, worker)


async def timeout_queue(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    await broker_run(run, times, clients, TimeoutQueue(timeout=1.0))


async def codel_queue(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    await broker_run(run, times, clients, CodelQueue(target=0.01, interval=0.1))


async def codel_max_len(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    await broker_run(run, times, clients, CodelQueue(target=0.01, interval=0.1, max_len=40))


async def codel_pie(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    pie = PieMeter(ask={"target": 0.01, "interval": 0.1}, rng=random.Random(run.seed))
    await broker_run(run, times, clients, CodelQueue(0.01, 0.1), meters=[pie])


async def adaptive_fifo(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    policy = AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0, out="fifo")
    await broker_run(run, times, clients, policy)


async def adaptive_adaptive(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    policy = AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0, out="adaptive")
    await broker_run(run, times, clients, policy)


async def fair_codel(run: Run, times: Sequence[float], clients: Sequence[int]) -> None:
    # The request value is the client id, so key=None (the value itself) keys by client.
    await broker_run(run, times, clients, FairQueue(CodelQueue(0.01, 0.1), key=None))


Strategy = Callable[[Run, Sequence[float], Sequence[int]], Awaitable[None]]

STRATEGIES: dict[str, Strategy] = {
    "channel, unbounded wait": memory_channel,
    "channel + 1 s client timeout": memory_channel_timeout,
    "TimeoutQueue(1.0)": timeout_queue,
    "CodelQueue(0.01, 0.1)": codel_queue,
    "CodelQueue(0.01, 0.1, max_len=40)": codel_max_len,
    "CodelQueue(0.01, 0.1) + PieMeter": codel_pie,
    "AdaptiveQueue(.., out='fifo')": adaptive_fifo,
    "AdaptiveQueue(.., out='adaptive')": adaptive_adaptive,
    "FairQueue(CodelQueue(0.01, 0.1))": fair_codel,
}


def run_one(name: str, load: float, seconds: float = 10.0, seed: int = 1) -> Run:
    """Run strategy ``name`` at ``load`` under a MockClock; return its record."""
    times, clients = arrivals(load, seconds, seed)
    run = Run(name, load, seconds, clients, seed)
    wall = time.perf_counter()
    trio.run(
        STRATEGIES[name],
        run,
        times,
        clients,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    run.elapsed = time.perf_counter() - wall
    answered = len(run.waits) + run.dropped
    assert answered == run.offered, f"{name} at {load}x: {answered} answered of {run.offered}"
    return run


def _run_job(job: tuple[str, float, float, int]) -> Run:
    return run_one(*job)


def run_all(
    loads: Sequence[float],
    seconds: float,
    seed: int = 1,
    jobs: int = 1,
    names: Sequence[str] | None = None,
) -> dict[tuple[float, str], Run]:
    """Every strategy at every load, in ``jobs`` processes (1: in this one)."""
    work = [(name, load, seconds, seed) for load in loads for name in (names or STRATEGIES)]
    work.sort(key=lambda job: -job[1])  # the heaviest runs first balance the pool
    if jobs <= 1:
        runs = [_run_job(job) for job in work]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(_run_job, work))
    return {(run.load, run.name): run for run in runs}


# --------------------------------------------------------------------------
# Output


def _cell(value: float, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}{spec}}"


def format_table(runs: Sequence[Run]) -> str:
    """One fixed-width table for the runs of one load."""
    load, seconds = runs[0].load, runs[0].seconds
    header = (
        f"{'strategy':<36}{'served':>8}{'busy':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'late p99':>10}{'drop wait':>11}{'w-b min':>9}"
    )
    lines = [
        (
            f"Load {load:g}x: {runs[0].offered} requests in {seconds:g} s "
            f"({load * CAPACITY:g}/s offered, capacity {CAPACITY:g}/s)"
        ),
        header,
        "-" * len(header),
    ]
    for run in runs:
        lines.append(
            f"{run.name:<36}{run.served_fraction:>8.1%}{run.utilisation:>8.1%}"
            + _cell(run.percentile_ms(0.5), 9, ".1f")
            + _cell(run.percentile_ms(0.99), 9, ".1f")
            + _cell(run.percentile_ms(1.0), 9, ".1f")
            + _cell(run.late_p99_ms(), 10, ".1f")
            + _cell(run.mean_drop_wait_ms, 11, ".1f")
            + f"{run.well_behaved_min:>9.1%}"
        )
    return "\n".join(lines)


BUSY = 0.95  # the utilisation every target needs at and above 1.2x


def _p99_check(
    runs: dict[tuple[float, str], Run], load: float, name: str, factor: float
) -> tuple[bool, str] | None:
    """``name``'s p99 at least ``factor`` x lower than TimeoutQueue's, workers >= 95% busy."""
    run, base = runs.get((load, name)), runs.get((load, "TimeoutQueue(1.0)"))
    if run is None or base is None:
        return None
    p99, base_p99 = run.percentile_ms(0.99), base.percentile_ms(0.99)
    busy_ok = load < 1.2 or run.utilisation >= BUSY
    ok = p99 * factor <= base_p99 and busy_ok
    ratio = base_p99 / p99 if p99 > 0 else math.inf
    return ok, (
        f"{load:g}x: {name} p99 {p99:.1f} ms vs TimeoutQueue(1.0) {base_p99:.1f} ms "
        f"({ratio:.1f}x lower, need {factor:g}x); busy {run.utilisation:.1%} (need {BUSY:.0%})"
    )


#: Loads at which the FairQueue target (well-behaved clients >= 80% served) applies.
FAIR_TARGET_LOADS = (1.2, 2.0)


def check_targets(runs: dict[tuple[float, str], Run]) -> list[tuple[bool, str]]:
    """The benchmark's targets that the given runs allow to check."""
    checks = [
        _p99_check(runs, 1.2, "CodelQueue(0.01, 0.1)", 5),
        _p99_check(runs, 2.0, "CodelQueue(0.01, 0.1, max_len=40)", 5),
        _p99_check(runs, 2.0, "CodelQueue(0.01, 0.1) + PieMeter", 5),
    ]
    for name in ("AdaptiveQueue(.., out='fifo')", "AdaptiveQueue(.., out='adaptive')"):
        checks += [
            _p99_check(runs, load, name, factor)
            for load, factor in ((1.2, 10), (2.0, 10), (4.0, 5))
        ]
        run = runs.get((0.8, name))
        if run is not None:
            checks.append(
                (
                    run.dropped_fraction <= 0.01,
                    f"0.8x: {name} dropped {run.dropped_fraction:.2%} (need <= 1%)",
                )
            )
    fair = "FairQueue(CodelQueue(0.01, 0.1))"
    for (load, name), run in sorted(runs.items()):
        # The fair-share target is set at 1.2x and 2x. From about 2.4x on it is out of
        # reach for this client mix: a backlogged fair share (capacity / 10 clients)
        # is below 80% of a well-behaved client's demand.
        if name != fair or load not in FAIR_TARGET_LOADS:
            continue
        fractions = run.client_fractions()
        detail = (
            f"{load:g}x: {name} well-behaved clients served {min(fractions[1:]):.1%} .. "
            f"{max(fractions[1:]):.1%} of their demand (need >= 80%), p99 "
            f"{run.client_p99_ms(False):.0f} ms; greedy client {fractions[0]:.1%}, p99 "
            f"{run.client_p99_ms(True):.0f} ms"
        )
        checks.append((min(fractions[1:]) >= 0.8, detail))
    return [check for check in checks if check is not None]


def print_report(runs: dict[tuple[float, str], Run]) -> bool:
    loads = sorted({load for load, _ in runs})
    for load in loads:
        print(format_table([run for (lo, _), run in runs.items() if lo == load]))
        print()
    print(
        "served: fraction of requests served; busy: worker utilisation while clients arrive;\n"
        "p50/p99/max: wait of served requests (ms); late p99: p99 of the served requests that\n"
        "arrived in the second half of the window (ms); drop wait: mean wait of dropped (ms);\n"
        "w-b min: smallest served fraction among the nine well-behaved clients.\n"
    )
    checks = check_targets(runs)
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in checks)


def plot(runs: dict[tuple[float, str], Run], load: float, path: Path) -> None:
    """Waits of served requests against arrival time at ``load``, one panel per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [run for (lo, _), run in runs.items() if lo == load]
    if not panels:
        return
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.0 * rows), sharex=True, sharey=True, squeeze=False
    )
    top = max(max(run.waits, default=MS) for run in panels) / MS * 1.5
    for ax, run in zip(axes.flat, panels, strict=False):
        waits_ms = [w / MS for w in run.waits]
        ax.scatter(
            run.served_at,
            [max(w, 0.05) for w in waits_ms],
            s=1,
            alpha=0.25,
            color="tab:blue",
            rasterized=True,
            label="served request",
        )
        centres, p99s = _rolling_p99(run.served_at, waits_ms, run.seconds, 0.25)
        ax.plot(centres, p99s, color="tab:red", linewidth=1.2, label="p99 per 0.25 s")
        ax.axhline(10, color="grey", linestyle=":", linewidth=0.8)
        ax.axhline(1000, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(0.05, top)
        ax.set_title(
            f"{run.name}\nserved {run.served_fraction:.0%}, p99 {run.percentile_ms(0.99):.0f} ms",
            fontsize=9,
        )
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("arrival time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("wait of served (ms)")
    axes.flat[0].legend(loc="lower right", fontsize=7, markerscale=4)
    fig.suptitle(
        f"Served waits at {load:g}x capacity ({WORKERS} workers x {SERVICE * 1000:g} ms, "
        f"Poisson arrivals for {panels[0].seconds:g} s); dotted 10 ms target, dashed 1 s"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rolling_p99(
    at: Sequence[float], waits_ms: Sequence[float], seconds: float, width: float
) -> tuple[list[float], list[float]]:
    """p99 of the waits of requests arriving in each ``width``-second bucket."""
    buckets: list[list[float]] = [[] for _ in range(max(1, math.ceil(seconds / width)))]
    for t, w in zip(at, waits_ms, strict=True):
        buckets[min(len(buckets) - 1, int(t / width))].append(w)
    centres, p99s = [], []
    for i, bucket in enumerate(buckets):
        if bucket:
            bucket.sort()
            centres.append((i + 0.5) * width)
            p99s.append(max(bucket[min(len(bucket) - 1, math.ceil(0.99 * len(bucket)) - 1)], 0.05))
    return centres, p99s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=float, nargs="+", help="loads as multiples of capacity")
    parser.add_argument("--seconds", type=float, help="arrival window in seconds (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 s at 1.2x and 2x only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes to run in (default: CPUs, at most 2)",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write the plot to {DOCS_PLOT} (tracked)"
    )
    parser.add_argument("--plot", type=Path, help="write the plot to this path")
    parser.add_argument("--plot-load", type=float, default=2.0, help="load to plot (default 2)")
    args = parser.parse_args(argv)
    loads = args.loads or ((1.2, 2.0) if args.quick else LOADS)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    print(
        f"{WORKERS} workers x {SERVICE * 1000:g} ms (capacity {CAPACITY:g}/s); Poisson arrivals "
        f"for {seconds:g} s from {len(SHARES)} clients (shares {SHARES[0]}:1 x "
        f"{len(SHARES) - 1}); MockClock, seed {args.seed}\n"
    )
    wall = time.perf_counter()
    runs = run_all(loads, seconds, args.seed, args.jobs)
    targets_met = print_report(runs)
    if seconds < 10:
        print(
            "\nnote: the targets are set for the 10 s window; in a shorter run the queues have"
            " not\nreached their steady state (e.g. TimeoutQueue's waits have not grown to 1 s)."
        )
    paths = ([DOCS_PLOT] if args.write_docs else []) + ([args.plot] if args.plot else [])
    if paths and args.plot_load not in loads:
        print(f"\nno plot: --plot-load {args.plot_load:g} is not among the loads run")
    elif paths:
        for path in paths:
            plot(runs, args.plot_load, path)
            print(f"\nplot: {path}")
    print(f"\nwall time {time.perf_counter() - wall:.1f} s ({args.jobs} process(es))")
    return 0 if targets_met else 1  # figures to read, not a test, but a missed target shows


if __name__ == "__main__":
    sys.exit(main())
