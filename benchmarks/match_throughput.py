"""Matches per second: a broker against ``trio.open_memory_channel(0)`` and a minimal broker.

The same workload runs on each: C client tasks each make N/C requests
(``broker.ask()`` / ``send.send()``) and W worker tasks take them as fast as
they come (``broker.ask_r()`` / ``receive.receive()``). Two references:

- the memory channel, trio's own hand-off;
- a *minimal broker*: two deques of parked tasks, ``wait_task_rescheduled``
  and ``reschedule``, with one checkpoint on an immediate match exactly as
  trio's channel does (``checkpoint_if_cancelled`` then
  ``cancel_shielded_checkpoint``) and no queue management at all: the floor
  that trio's scheduler sets for this design.

Runs of every contender alternate in one process (round after round), and the
median of the rounds is reported with the ratios broker / channel and
broker / minimal, each the median of the per-round ratios (higher is better;
1.0 = as fast), which keeps the ratios steady on a busy machine. The brokers carry
TimeoutQueue, DropQueue, CodelQueue or AdaptiveQueue on the ask side (the
ask_r side always waits in a TimeoutQueue).

    python benchmarks/match_throughput.py [--matches 50000] [--rounds 7] [--cpu]

This prints figures; it is not a test and gates nothing.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio
from rounds import Workload, add_timing_arguments, print_table

from sbroker import Broker, Drop, Go
from sbroker.queues import AdaptiveQueue, CodelQueue, DropQueue, TimeoutQueue


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


def _minimal_request(mine: str, other: str) -> Callable[[MinimalBroker, Any], Awaitable[Any]]:
    """One side of the minimal broker; one coroutine per call, like ``Broker.ask``."""

    async def request(self: MinimalBroker, value: Any = None) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        waiting = getattr(self, other)
        if waiting:
            task, their_value = waiting.popleft()
            trio.lowlevel.reschedule(task, outcome.Value(value))
            await trio.lowlevel.cancel_shielded_checkpoint()
            return their_value
        queue = getattr(self, mine)
        entry = (trio.lowlevel.current_task(), value)
        queue.append(entry)

        def abort(_: object) -> trio.lowlevel.Abort:
            queue.remove(entry)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    return request


class MinimalBroker:
    """Two deques of parked tasks and nothing else: no policies, times or results."""

    def __init__(self) -> None:
        self.asks: deque[tuple[trio.lowlevel.Task, Any]] = deque()
        self.ask_rs: deque[tuple[trio.lowlevel.Task, Any]] = deque()

    ask = _minimal_request("asks", "ask_rs")
    ask_r = _minimal_request("ask_rs", "asks")


async def clients_and_workers(
    nursery: trio.Nursery,
    ask: Callable[[int], Awaitable[object]],
    worker: Callable[[], Awaitable[None]],
    clients: int,
    workers: int,
    matches: int,
) -> None:
    """Start the workers in ``nursery``; return once C clients got N/C matches each.

    A client whose ask is dropped (a policy's timeout on a busy machine) asks
    again, so that every contender makes the same number of matches.
    """

    async def client(count: int) -> None:
        for i in range(count):
            while type(await ask(i)) is Drop:
                pass

    for _ in range(workers):
        nursery.start_soon(worker)
    async with trio.open_nursery() as producers:
        for _ in range(clients):
            producers.start_soon(client, matches // clients)


async def minimal_broker(clients: int, workers: int, matches: int) -> int:
    broker = MinimalBroker()
    matched = 0

    async def worker() -> None:
        nonlocal matched
        while True:
            await broker.ask_r()
            matched += 1

    async with trio.open_nursery() as nursery:
        await clients_and_workers(nursery, broker.ask, worker, clients, workers, matches)
        nursery.cancel_scope.cancel()
    return matched


def broker_workload(policy: object) -> Workload:
    async def run(clients: int, workers: int, matches: int) -> int:
        broker = Broker(ask=policy, ask_r=TimeoutQueue())  # type: ignore[arg-type]
        matched = 0

        async def worker() -> None:
            nonlocal matched
            while True:
                if isinstance(await broker.ask_r(), Go):
                    matched += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            await clients_and_workers(nursery, broker.ask, worker, clients, workers, matches)
            broker.close()
            nursery.cancel_scope.cancel()
        return matched

    return run


CHANNEL = "memory channel"
MINIMAL = "minimal broker"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matches", type=int, default=50_000)
    add_timing_arguments(parser)
    args = parser.parse_args()
    contenders: dict[str, Workload] = {
        CHANNEL: memory_channel,
        MINIMAL: minimal_broker,
        "broker TimeoutQueue": broker_workload(TimeoutQueue()),
        "broker DropQueue": broker_workload(DropQueue()),
        "broker CodelQueue": broker_workload(CodelQueue()),
        "broker AdaptiveQueue": broker_workload(AdaptiveQueue()),
    }
    print_table(
        contenders,
        ((1, 1), (100, 10), (1000, 100)),
        args.matches,
        args,
        unit="matches",
        sizes_label="clients/workers",
        references={"channel": CHANNEL, "minimal": MINIMAL},
    )


if __name__ == "__main__":
    main()
