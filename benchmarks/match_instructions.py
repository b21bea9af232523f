"""Instructions per match, counted by valgrind: a profile of the match path that does not move.

Wall and CPU time on a shared 2-core machine move by a few per cent from run to
run, as much as the differences worth measuring on a hot path. The number of
instructions a match executes hardly moves: runs agree to within 0.3%. Each
contender (the workloads of ``match_throughput.py``) runs twice under
valgrind's callgrind, for N1 and N2 matches; ``(I2 - I1) / (N2 - N1)`` is the
cost of one match, start-up and imports cancelling out.

Under valgrind a program runs ~50x slower, which would change what the
time-based policies do (CoDel and AdaptiveQueue would see long sojourns and
drop). Every contender therefore runs on a clock that costs what trio's
``SystemClock`` costs (one Python call, an addition) but advances at
``--rate`` (default 0.02) of real time.

Instructions are not time: cache misses and mispredicted branches cost time
and are not counted, so read these figures next to ``match_throughput.py``,
not instead of it.

    python benchmarks/match_instructions.py [--sizes 1/1,100/10,1000/100] [--jobs 2]

Requires valgrind. This prints figures; it is not a test and gates nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import trio

CONTENDERS = ("channel", "minimal", "Timeout", "Drop", "Codel", "Adaptive")
HERE = Path(__file__).resolve().parent


class ScaledClock(trio.abc.Clock):
    """A clock as cheap to read as trio's ``SystemClock``, running at ``rate`` of real time."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._offset = 10_000.0

    def start_clock(self) -> None:
        """Nothing to start."""

    def current_time(self) -> float:
        """Seconds, advancing at ``rate``."""
        return self._offset + time.perf_counter() * self._rate

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds until ``deadline``."""
        return (deadline - self.current_time()) / self._rate


def _child(contender: str, clients: int, workers: int, matches: int, rate: float) -> None:
    """Run one contender for ``matches`` matches (after a short warm-up)."""
    sys.path.insert(0, str(HERE))
    from match_throughput import broker_workload, memory_channel, minimal_broker
    from rounds import Workload

    from sbroker import queues

    workload: Workload
    if contender == "channel":
        workload = memory_channel
    elif contender == "minimal":
        workload = minimal_broker
    else:
        workload = broker_workload(getattr(queues, f"{contender}Queue")())
    trio.run(workload, clients, workers, 1_000, clock=ScaledClock(rate))
    trio.run(workload, clients, workers, matches, clock=ScaledClock(rate))


def _instructions(contender: str, size: tuple[int, int], matches: int, rate: float) -> int:
    """The instructions callgrind counts for a whole child process."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        contender,
        f"{size[0]}/{size[1]}",
        str(matches),
        str(rate),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _per_match(contender: str, size: tuple[int, int], args: argparse.Namespace) -> float:
    low, high = args.matches
    counts = [_instructions(contender, size, n, args.rate) for n in (low, high)]
    return float(counts[1] - counts[0]) / (high - low)


def _size(text: str) -> tuple[int, int]:
    clients, _, workers = text.partition("/")
    return int(clients), int(workers)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        contender, size_text, matches, rate = sys.argv[2:6]
        _child(contender, *_size(size_text), int(matches), float(rate))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1/1,100/10,1000/100")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--matches", type=int, nargs=2, default=(5_000, 25_000))
    parser.add_argument("--rate", type=float, default=0.02)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    sizes = [_size(s) for s in args.sizes.split(",")]
    contenders = args.contenders.split(",")
    cells = [(size, contender) for size in sizes for contender in contenders]
    with ThreadPoolExecutor(args.jobs) as pool:
        costs = pool.map(lambda cell: _per_match(cell[1], cell[0], args), cells)
        results = dict(zip(cells, costs, strict=True))
    low, high = args.matches
    print(f"instructions per match (callgrind, {high} - {low} matches, clock rate {args.rate});")
    print("the ratios are reference cost / contender cost: higher is better, as in throughput\n")
    print("| clients/workers | contender | instructions/match | / channel | / minimal |")
    print("|---|---|---:|---:|---:|")
    for size in sizes:
        for contender in contenders:
            cost = results[size, contender]
            channel = results.get((size, "channel"))
            minimal = results.get((size, "minimal"))
            ratios = "".join(
                f" {reference / cost:.3f} |" if reference else " |"
                for reference in (channel, minimal)
            )
            name = contender if contender in ("channel", "minimal") else f"broker {contender}Queue"
            print(f"| {size[0]}/{size[1]} | {name} | {cost:,.0f} |{ratios}")


if __name__ == "__main__":
    main()
