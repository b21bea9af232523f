"""Permits per second: ``regulator.permit()`` against ``trio.CapacityLimiter``.

T tasks share N acquisitions; each takes a permit for an empty block and
gives it back (``async with regulator.permit():`` with an ``OpenValve(max_size=L)``,
``async with limiter:`` with ``trio.CapacityLimiter(L)``). Runs alternate in
one process, round after round; the table shows the median rate of each and
the median per-round ratio regulator / limiter (higher is better; 1.0 = as fast).

    python benchmarks/permit_throughput.py [--permits 50000] [--rounds 7] [--cpu]

This prints figures; it is not a test and gates nothing.
"""

from __future__ import annotations

import argparse

import trio
from rounds import Workload, add_timing_arguments, print_table

from sbroker.regulator import OpenValve, Regulator


def spread(nursery: trio.Nursery, tasks: int, permits: int, take: Workload) -> None:
    for _ in range(tasks):
        nursery.start_soon(take, permits // tasks, 0, 0)


async def capacity_limiter(tasks: int, limit: int, permits: int) -> int:
    limiter = trio.CapacityLimiter(limit)
    taken = 0

    async def take(count: int, _width: int, _: int) -> int:
        nonlocal taken
        for _ in range(count):
            async with limiter:
                taken += 1
        return count

    async with trio.open_nursery() as nursery:
        spread(nursery, tasks, permits, take)
    return taken


async def regulator_permit(tasks: int, limit: int, permits: int) -> int:
    regulator = Regulator(valve=OpenValve(max_size=limit))
    taken = 0

    async def take(count: int, _width: int, _: int) -> int:
        nonlocal taken
        for _ in range(count):
            async with regulator.permit():
                taken += 1
        return count

    async with trio.open_nursery() as nursery:
        await nursery.start(regulator.run)
        async with trio.open_nursery() as takers:
            spread(takers, tasks, permits, take)
        regulator.close()
    return taken


LIMITER = "CapacityLimiter"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--permits", type=int, default=50_000)
    add_timing_arguments(parser)
    args = parser.parse_args()
    contenders: dict[str, Workload] = {
        LIMITER: capacity_limiter,
        "regulator.permit() OpenValve": regulator_permit,
    }
    print_table(
        contenders,
        ((1, 1), (10, 10), (100, 10), (1000, 100)),
        args.permits,
        args,
        unit="permits",
        sizes_label="tasks/limit",
        references={"limiter": LIMITER},
    )


if __name__ == "__main__":
    main()
