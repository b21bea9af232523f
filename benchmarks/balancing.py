"""Balancing: how each policy spreads load over brokers of unequal speed, and what a pick costs.

Four in-process brokers serve one balancer. Three have 4 workers, one has 2
(half the capacity); every worker takes an exponentially distributed service
time with mean 10 ms, so the total capacity is 14 / 0.010 = 1400 requests/s.
Clients arrive as an open-loop Poisson stream at 0.9x that capacity for
``--seconds`` (default 10 s), and each does one ``await balancer.ask()``.
Every broker has a BetterMeter (default parameters) and an unbounded
TimeoutQueue, so nothing is dropped: a policy that overloads the slow broker
shows it as waiting time. Runs happen under ``trio.testing.MockClock``
(autojump), so simulated time is free and results are deterministic for a
seed: the same arrivals and service times for every policy.

Per policy the first table shows p50/p99/max of the ``Go.sojourn_time`` of
every request and the share of requests each broker served (the half-speed
broker last). The second table is the cost of one pick (``Balancer._pick``,
the whole per-request choice: probe check, candidate list, policy) in
microseconds with 4, 64 and 1024 endpoints, next to a direct
``broker.nb_ask()`` and ``trio.current_time()`` in the same run for scale.

    python benchmarks/balancing.py [--seconds 10] [--seed 1] [--plot] [--remote 3]
    python benchmarks/balancing.py --remote-only [--remote 3]

``--remote S`` adds a third table: one to four ``sbroker serve`` processes
(one broker each, started by this script and stopped by pid) behind a
round_robin balancer, ``nb_ask`` round trips per second from 64 tasks of this
process for S seconds each.

``--plot`` writes docs/img/balancing.png. This prints figures; it is not a
test.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sbroker import BetterMeter, Broker, Go  # noqa: E402
from sbroker.balance import Balancer, open_balancer  # noqa: E402
from sbroker.queues import TimeoutQueue  # noqa: E402

WORKERS = (4, 4, 4, 2)
SERVICE = 0.010  # mean seconds per request
CAPACITY = sum(WORKERS) / SERVICE
LOAD = 0.9
POLICIES = ("random", "round_robin", "least_loaded", "best_of_two", "best_of_two_20")
MS = 1_000_000


def percentile(values: Sequence[int], fraction: float) -> float:
    """The ``fraction`` percentile of ``values`` (ns) in ms."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / MS


async def simulate(policy: str, seconds: float, seed: int) -> tuple[list[int], list[int]]:
    """One run: the sojourn of every request (ns) and requests served per broker."""
    arrivals = random.Random(f"arrivals-{seed}")
    service = random.Random(f"service-{seed}")
    brokers = [Broker(ask=TimeoutQueue(timeout=None), meters=[BetterMeter()]) for _ in WORKERS]
    served = [0] * len(brokers)
    sojourns: list[int] = []

    async def worker(broker: Broker, index: int) -> None:
        while True:
            result = await broker.ask_r(index)
            if isinstance(result, Go):
                await trio.sleep(service.expovariate(1 / SERVICE))

    async with trio.open_nursery() as nursery:
        for index, (broker, count) in enumerate(zip(brokers, WORKERS, strict=True)):
            await nursery.start(broker.run)
            for _ in range(count):
                nursery.start_soon(worker, broker, index)
        async with open_balancer(brokers, policy, rng=random.Random(seed)) as balancer:

            async def client() -> None:
                result = await balancer.ask()
                assert isinstance(result, Go), result
                served[result.value] += 1
                sojourns.append(result.sojourn_time)

            async with trio.open_nursery() as clients:
                end = trio.current_time() + seconds
                while trio.current_time() < end:
                    clients.start_soon(client)
                    await trio.sleep(arrivals.expovariate(LOAD * CAPACITY))
        nursery.cancel_scope.cancel()
    return sojourns, served


def run_policy(policy: str, seconds: float, seed: int) -> tuple[list[int], list[int]]:
    """Run :func:`simulate` under a MockClock."""
    return trio.run(
        simulate, policy, seconds, seed, clock=trio.testing.MockClock(autojump_threshold=0)
    )


def pick_cost(policy: str, endpoints: int, picks: int = 50_000) -> float:
    """Microseconds per pick with ``endpoints`` brokers (wall clock, noisy)."""

    async def measure() -> float:
        brokers = [Broker(meters=[BetterMeter()]) for _ in range(endpoints)]
        balancer = Balancer(brokers, policy, rng=random.Random(1))  # type: ignore[arg-type]
        pick = balancer._pick
        tried: list[object] = []
        start = time.perf_counter()
        for _ in range(picks):
            pick("ask", tried)  # type: ignore[arg-type]
        return (time.perf_counter() - start) / picks * 1e6

    return trio.run(measure)


def reference_costs(calls: int = 50_000) -> tuple[float, float]:
    """Microseconds of ``broker.nb_ask()`` (nobody waiting) and ``trio.current_time()``."""

    async def measure() -> tuple[float, float]:
        broker = Broker()
        start = time.perf_counter()
        for _ in range(calls):
            broker.nb_ask()
        nb_ask = (time.perf_counter() - start) / calls * 1e6
        start = time.perf_counter()
        for _ in range(calls):
            trio.current_time()
        return nb_ask, (time.perf_counter() - start) / calls * 1e6

    return trio.run(measure)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_servers(count: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """``count`` ``sbroker serve`` processes (one broker 'default' each); their endpoint URLs."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "sbroker", "serve", "--listen", f"127.0.0.1:{port}"],
                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"tcp://127.0.0.1:{port}/default")
    for url in urls:
        port = int(url.split(":")[2].split("/")[0])
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return processes, urls


async def _round_trips(call: Any, seconds: float, concurrency: int) -> float:
    """Calls of ``call()`` per second from ``concurrency`` tasks."""
    count = 0

    async def client() -> None:
        nonlocal count
        while True:
            await call()
            count += 1

    start = time.perf_counter()
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(client)
    return count / (time.perf_counter() - start)


def remote_round_trips(
    servers: int, seconds: float, concurrency: int = 64, direct: bool = False
) -> float:
    """Round trips per second (``nb_ask``, answered Drop) through a balancer over
    ``servers`` processes, from ``concurrency`` tasks of this process; ``direct``:
    through the client alone (one server), for the balancer's overhead."""
    processes, urls = start_servers(servers)
    try:

        async def measure() -> float:
            if direct:
                from sbroker.client import connect

                address = urls[0].rsplit("/", 1)[0]
                async with connect(address) as connection:
                    broker = connection.broker("default")
                    return await _round_trips(broker.nb_ask, seconds, concurrency)
            async with open_balancer(urls, "round_robin") as balancer:
                for _ in range(servers * 4):  # open every connection first
                    await balancer.nb_ask()
                return await _round_trips(balancer.nb_ask, seconds, concurrency)

        return trio.run(measure)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def plot(results: dict[str, tuple[list[int], list[int]]], path: Path) -> None:
    """p50/p99 per policy (log scale) and each broker's share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    x = range(len(names))
    p50 = [percentile(results[n][0], 0.5) for n in names]
    p99 = [percentile(results[n][0], 0.99) for n in names]
    left.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    left.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
    left.set_yscale("log")
    left.set_xticks(list(x), names, rotation=20)
    left.set_ylabel("sojourn (ms, log)")
    left.set_title(f"4 brokers, one at half speed, load {LOAD}x")
    left.legend()
    bottom = [0.0] * len(names)
    for broker in range(len(WORKERS)):
        shares = [results[n][1][broker] / sum(results[n][1]) for n in names]
        label = f"broker {broker} ({WORKERS[broker]} workers)"
        right.bar(list(x), shares, 0.6, bottom=bottom, label=label)
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    right.axhline(sum(WORKERS[:3]) / sum(WORKERS), color="black", lw=0.8, ls="--")
    right.set_xticks(list(x), names, rotation=20)
    right.set_ylabel("share of requests")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def print_remote(seconds: float) -> None:
    """The remote table: round trips per second with 1-4 server processes."""
    print()
    print(f"Remote: nb_ask round trips/s through a round_robin balancer, 64 tasks, {seconds:g} s")
    print()
    print("| server processes | round trips/s |")
    print("|---:|---:|")
    print(f"| 1, client without a balancer | {remote_round_trips(1, seconds, direct=True):.0f} |")
    for servers in (1, 2, 3, 4):
        print(f"| {servers} | {remote_round_trips(servers, seconds):.0f} |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot", action="store_true", help="write docs/img/balancing.png")
    parser.add_argument(
        "--remote", type=float, default=0.0, metavar="SECONDS",
        help="also measure 1-4 `sbroker serve` processes behind a balancer for SECONDS each",
    )
    parser.add_argument("--remote-only", action="store_true", help="only the remote table")
    args = parser.parse_args(argv)
    if args.remote_only:
        print_remote(args.remote or 3.0)
        return

    results = {policy: run_policy(policy, args.seconds, args.seed) for policy in POLICIES}
    print(f"Load {LOAD}x of {CAPACITY:.0f} req/s, {args.seconds:g} s simulated, seed {args.seed}")
    print()
    print("| policy | requests | p50 ms | p99 ms | max ms | share per broker (last: half speed) |")
    print("|---|---:|---:|---:|---:|---|")
    for policy, (sojourns, served) in results.items():
        shares = " / ".join(f"{count / sum(served):.3f}" for count in served)
        print(
            f"| {policy} | {len(sojourns)} | {percentile(sojourns, 0.5):.2f} | "
            f"{percentile(sojourns, 0.99):.2f} | {max(sojourns) / MS:.2f} | {shares} |"
        )
    ratio = percentile(results["random"][0], 0.99) / percentile(results["best_of_two"][0], 0.99)
    print()
    print(f"random p99 / best_of_two p99 = {ratio:.1f}x (target >= 3x): "
          f"{'met' if ratio >= 3 else 'NOT met'}")

    print()
    print("Pick cost (us per pick, wall clock; noisy on a shared machine)")
    print()
    print("| policy | 4 endpoints | 64 endpoints | 1024 endpoints |")
    print("|---|---:|---:|---:|")
    for policy in POLICIES:
        costs = [pick_cost(policy, n) for n in (4, 64, 1024)]
        print(f"| {policy} | " + " | ".join(f"{c:.2f}" for c in costs) + " |")
    nb_ask, current_time = reference_costs()
    print()
    print(f"For scale: broker.nb_ask() {nb_ask:.2f} us, trio.current_time() {current_time:.2f} us")
    if args.remote:
        print_remote(args.remote)
    if args.plot:
        path = Path(__file__).resolve().parent.parent / "docs" / "img" / "balancing.png"
        plot(results, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
