"""What the throughput benchmarks share: timing one run and comparing alternating rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import trio

#: A workload: ``await workload(tasks, width, count)`` returns how many operations it did.
Workload = Callable[[int, int, int], Awaitable[int]]


def timed(workload: Workload, tasks: int, width: int, count: int) -> float:
    """Operations per second of one ``trio.run`` of ``workload``."""
    start = time.perf_counter()
    done = trio.run(workload, tasks, width, count)
    elapsed = time.perf_counter() - start
    assert done == count // tasks * tasks, (done, count)
    return done / elapsed


def alternate(
    contenders: dict[str, Workload], tasks: int, width: int, count: int, rounds: int
) -> dict[str, list[float]]:
    """Run every contender once per round, round after round; their rates per round."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, workload in contenders.items():
            rates[name].append(timed(workload, tasks, width, count))
    return rates


def median_ratio(rates: list[float], references: list[float]) -> float:
    """The median over the rounds of ``rate / reference`` measured in the same round.

    A ratio within one round compares runs made seconds apart, so it stays
    steady on a machine whose load changes.
    """
    return statistics.median(r / ref for r, ref in zip(rates, references, strict=True))
