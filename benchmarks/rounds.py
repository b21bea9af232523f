"""What the throughput benchmarks share: timing one run and comparing alternating rounds."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio

#: A workload: ``await workload(tasks, width, count)`` returns how many operations it did.
Workload = Callable[[int, int, int], Awaitable[int]]


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rounds`` and ``--cpu``, shared by the throughput benchmarks."""
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time by the process's CPU time instead of wall time "
        "(steadier on a shared machine; trio's loop is one thread)",
    )


def timed(workload: Workload, tasks: int, width: int, count: int, *, cpu: bool = False) -> float:
    """Operations per second of one ``trio.run`` of ``workload``."""
    clock = time.process_time if cpu else time.perf_counter
    start = clock()
    done = trio.run(workload, tasks, width, count)
    elapsed = clock() - start
    assert done == count // tasks * tasks, (done, count)
    return done / elapsed


def alternate(
    contenders: dict[str, Workload],
    tasks: int,
    width: int,
    count: int,
    args: argparse.Namespace,
) -> dict[str, list[float]]:
    """Run every contender once per round, round after round; their rates per round."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, workload in contenders.items():
            rates[name].append(timed(workload, tasks, width, count, cpu=args.cpu))
    return rates


def median_ratio(rates: list[float], references: list[float]) -> float:
    """The median over the rounds of ``rate / reference`` measured in the same round.

    A ratio within one round compares runs made seconds apart, so it stays
    steady on a machine whose load changes.
    """
    return statistics.median(r / ref for r, ref in zip(rates, references, strict=True))


def print_table(
    contenders: dict[str, Workload],
    sizes: tuple[tuple[int, int], ...],
    count: int,
    args: argparse.Namespace,
    *,
    unit: str,
    sizes_label: str,
    references: dict[str, str],
) -> None:
    """Alternate the contenders at each size; print a markdown table of rates and ratios.

    ``references`` maps a column label to the contender every rate is divided by.
    """
    timing = "CPU time" if args.cpu else "wall time"
    print(f"{count} {unit} per run, median of {args.rounds} alternating rounds, {timing}\n")
    columns = "".join(f" / {label} |" for label in references)
    print(f"| {sizes_label} | contender | {unit}/s |{columns}")
    print("|---|---|---:|" + "---:|" * len(references))
    for tasks, width in sizes:
        rates = alternate(contenders, tasks, width, count, args)
        for name, values in rates.items():
            ratios = "".join(
                f" {median_ratio(values, rates[reference]):.2f} |"
                for reference in references.values()
            )
            print(f"| {tasks}/{width} | {name} | {statistics.median(values):,.0f} |{ratios}")
