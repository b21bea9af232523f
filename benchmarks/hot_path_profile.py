"""Where one match (or one permit) spends its time: a cProfile of the throughput workloads.

Prints, per function, its own time per operation (microseconds, inflated by
the profiler's overhead on every call, so read the split, not the totals)
and its calls per operation, grouped as sbroker's own code, trio's
scheduler and primitives, and the benchmark's tasks.

    python benchmarks/hot_path_profile.py [match|permit|minimal|channel|limiter]
        [--tasks 100] [--width 10] [--count 20000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import trio
from match_throughput import broker_workload, memory_channel, minimal_broker
from permit_throughput import capacity_limiter, regulator_permit
from rounds import Workload

from sbroker.queues import TimeoutQueue

WORKLOADS: dict[str, Workload] = {
    "match": broker_workload(TimeoutQueue()),
    "minimal": minimal_broker,
    "channel": memory_channel,
    "permit": regulator_permit,
    "limiter": capacity_limiter,
}


def group(filename: str) -> str:
    if "/sbroker/" in filename:
        return "sbroker"
    if "trio" in filename or "outcome" in filename:
        return "trio"
    if "benchmarks" in filename:
        return "benchmark"
    return "builtin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=WORKLOADS, nargs="?", default="match")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    profiler = cProfile.Profile()
    profiler.runcall(trio.run, WORKLOADS[args.workload], args.tasks, args.width, args.count)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    totals: dict[str, float] = {}
    for (filename, line, name), (_, calls, own, _, _) in stats.items():
        where = group(filename)
        totals[where] = totals.get(where, 0.0) + own
        rows.append((own, calls, f"{where}: {filename.rsplit('/', 1)[-1]}:{line} {name}"))
    per = 1e6 / args.count
    print(f"{args.workload}, {args.tasks}/{args.width}, {args.count} operations under cProfile\n")
    print("| own time per operation (us) | calls per operation | function |")
    print("|---:|---:|---|")
    for own, calls, label in sorted(rows, reverse=True)[: args.top]:
        print(f"| {own * per:.2f} | {calls / args.count:.1f} | {label} |")
    print("\n| group | own time per operation (us) |")
    print("|---|---:|")
    for where, own in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {where} | {own * per:.2f} |")


if __name__ == "__main__":
    main()
