"""Memory per waiting request (tracemalloc), next to a memory channel holding as many.

- ``async_ask``: 10^5 requests waiting in a broker's ask queue (a fresh tag
  each, and all under one shared tag), against a buffered memory channel
  holding 10^5 values (``send_nowait``).
- parked ``ask``: 10^4 tasks parked in ``broker.ask()``, against 10^4 tasks
  parked in ``send`` on ``open_memory_channel(0)`` and 10^4 tasks parked in
  ``trio.sleep_forever()``; "added to its task" is the difference from the
  last.

Every figure is the growth of traced memory divided by the count, measured
while the requests wait.

    python benchmarks/request_memory.py [--pendings 100000] [--parked 10000]
"""

from __future__ import annotations

import argparse
import math
import tracemalloc
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from sbroker import Broker, Pending
from sbroker.queues import TimeoutQueue

#: Open the waiting requests; return what keeps them alive.
Opener = Callable[[int], object]


def _per_item(count: int, open_requests: Opener) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    alive = open_requests(count)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del alive
    return used / count


def buffered_channel(count: int) -> object:
    send, receive = trio.open_memory_channel[int](math.inf)
    for i in range(count):
        send.send_nowait(i)
    return send, receive


def async_asks(tag: object) -> Callable[[Broker], Opener]:
    def opener(broker: Broker) -> Opener:
        def open_requests(count: int) -> list[Pending]:
            return [broker.async_ask(i, tag=tag) for i in range(count)]

        return open_requests

    return opener


async def parked(count: int, park: Callable[[int], Awaitable[object]]) -> float:
    """Bytes per task parked in ``park(i)``, tasks included."""
    async with trio.open_nursery() as nursery:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            nursery.start_soon(park, i)
        await trio.testing.wait_all_tasks_blocked()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        nursery.cancel_scope.cancel()
    return used / count


async def sleep_forever(_value: int) -> None:
    await trio.sleep_forever()


async def measure(pendings: int, tasks: int) -> None:
    print("| waiting requests | bytes each |")
    print("|---|---:|")
    buffered = _per_item(pendings, buffered_channel)
    print(f"| {pendings} in a memory channel buffer | {buffered:.0f} |")
    for label, tag in (("fresh tags", None), ("one shared tag", "shared")):
        broker = Broker(ask=TimeoutQueue(timeout=None))
        per = _per_item(pendings, async_asks(tag)(broker))
        broker.close()
        print(f"| {pendings} async_ask, {label} | {per:.0f} |")
    broker = Broker(ask=TimeoutQueue(timeout=None))
    send, _receive = trio.open_memory_channel[int](0)
    sleeping = await parked(tasks, sleep_forever)
    in_send = await parked(tasks, send.send)
    in_ask = await parked(tasks, broker.ask)
    broker.close()
    print(f"| {tasks} tasks in trio.sleep_forever() | {sleeping:.0f} |")
    print(f"| {tasks} tasks in channel send (added) | {in_send:.0f} ({in_send - sleeping:+.0f}) |")
    print(f"| {tasks} tasks in broker.ask (added) | {in_ask:.0f} ({in_ask - sleeping:+.0f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pendings", type=int, default=100_000)
    parser.add_argument("--parked", type=int, default=10_000)
    args = parser.parse_args()
    trio.run(measure, args.pendings, args.parked)


if __name__ == "__main__":
    main()
