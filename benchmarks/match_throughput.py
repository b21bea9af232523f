"""Matches per second: a broker against ``trio.open_memory_channel(0)``.

The same workload runs on each: C client tasks each make N/C requests
(``broker.ask()`` / ``send.send()``) and W worker tasks take them as fast as
they come (``broker.ask_r()`` / ``receive.receive()``). Runs of the three
contenders alternate in one process, and the median of the rounds is reported
with the ratio broker / memory channel (higher is better; 1.0 = as fast).

    python benchmarks/match_throughput.py [--matches 50000] [--rounds 5]

This prints figures; it is not a test and gates nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

from sbroker import Broker, Go
from sbroker.queues import DropQueue, TimeoutQueue

Workload = Callable[[int, int, int], Awaitable[int]]


async def memory_channel(clients: int, workers: int, matches: int) -> int:
    send, receive = trio.open_memory_channel[int](0)
    received = 0

    async def client(count: int) -> None:
        for i in range(count):
            await send.send(i)

    async def worker() -> None:
        nonlocal received
        async for _ in receive:
            received += 1

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
        async with send, trio.open_nursery() as producers:
            for _ in range(clients):
                producers.start_soon(client, matches // clients)
    return received


def broker_workload(policy: object) -> Workload:
    async def run(clients: int, workers: int, matches: int) -> int:
        broker = Broker(ask=policy, ask_r=policy)  # type: ignore[arg-type]
        matched = 0

        async def client(count: int) -> None:
            for i in range(count):
                await broker.ask(i)

        async def worker() -> None:
            nonlocal matched
            while True:
                if isinstance(await broker.ask_r(), Go):
                    matched += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            for _ in range(workers):
                nursery.start_soon(worker)
            async with trio.open_nursery() as producers:
                for _ in range(clients):
                    producers.start_soon(client, matches // clients)
            broker.close()
            nursery.cancel_scope.cancel()
        return matched

    return run


def timed(workload: Workload, clients: int, workers: int, matches: int) -> float:
    """Matches per second of one run."""
    start = time.perf_counter()
    done = trio.run(workload, clients, workers, matches)
    elapsed = time.perf_counter() - start
    assert done == matches // clients * clients, (done, matches)
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matches", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    contenders: dict[str, Workload] = {
        "memory channel": memory_channel,
        "broker TimeoutQueue": broker_workload(TimeoutQueue()),
        "broker DropQueue": broker_workload(DropQueue()),
    }
    print(f"{args.matches} matches per run, median of {args.rounds} alternating rounds\n")
    print(f"{'clients/workers':<16}{'contender':<22}{'matches/s':>12}{'ratio':>8}")
    for clients, workers in ((1, 1), (100, 10), (1000, 100)):
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, workload in contenders.items():
                rates[name].append(timed(workload, clients, workers, args.matches))
        baseline = statistics.median(rates["memory channel"])
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"{clients}/{workers:<14}{name:<22}{rate:>12,.0f}{rate / baseline:>8.2f}")


if __name__ == "__main__":
    main()
