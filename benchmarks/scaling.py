"""Per-operation cost against the number of requests waiting (issue 9).

For each queue policy, a broker's ask queue is filled with a backlog of W
waiting ``async_ask`` requests (W = 10, 10**3, 10**5, 10**6), then each
operation is timed K times on top of it, and the best per-operation time of
a few rounds is printed (microseconds):

* ``enqueue``: ``async_ask`` joining the queue;
* ``match``: ``nb_ask_r`` taking the request the policy hands out;
* ``Pending.cancel``: a waiting request at a random place withdraws;
* ``trio cancel``: a task parked in ``ask`` is cancelled by trio (per task);
* ``cancel(tag)``: ``broker.cancel`` of a tag held by one waiting request.

Every operation should cost the same whatever W is: the last column is the
cost at the largest W over the cost at W = 10 (target: below 2). A second
table does the same for a ``FairQueue`` with 10 to 10**5 keys, at the
largest backlog measured.

    python benchmarks/scaling.py [--quick] [--ops 1000] [--rounds 3]

``--quick`` stops at 10**5 waiting. This prints figures; it gates nothing.
The machine's load makes single figures noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

import trio
import trio.testing

from sbroker import Broker, Pending
from sbroker.queues import (
    AdaptiveQueue,
    CodelQueue,
    DropQueue,
    FairQueue,
    QueuePolicy,
    TimeoutQueue,
)

# Policies that never drop during the run, so the backlog stays as built.
POLICIES: dict[str, QueuePolicy] = {
    "DropQueue": DropQueue(),
    "TimeoutQueue": TimeoutQueue(timeout=None),
    "CodelQueue": CodelQueue(target=1e6, interval=1e6),
    "AdaptiveQueue": AdaptiveQueue(target=1e6, interval=1e6, timeout=None),
    "FairQueue": FairQueue(TimeoutQueue(timeout=None), key=lambda v: v % 100),
}
OPERATIONS = ("enqueue", "match", "Pending.cancel", "trio cancel", "cancel(tag)")
BACKLOG = "backlog"


CHUNK = 25  # operations timed together; the median chunk hides a preempted one


def per_op(seconds: float, ops: int) -> float:
    return seconds / ops * 1e6


def median_per_op(operations: list[Callable[[], object]]) -> float:
    """Microseconds per operation: the median over chunks of ``CHUNK`` operations."""
    figures = []
    clock = time.perf_counter
    for first in range(0, len(operations), CHUNK):
        chunk = operations[first : first + CHUNK]
        start = clock()
        for operation in chunk:
            operation()
        figures.append(per_op(clock() - start, len(chunk)))
    return statistics.median(figures)


async def measure(
    policy: QueuePolicy, waiting: int, ops: int, rng: random.Random
) -> dict[str, float]:
    """One round of every operation on a broker holding ``waiting`` requests."""
    broker = Broker(ask=policy, ask_r=DropQueue())
    backlog = [broker.async_ask(i, tag=BACKLOG) for i in range(waiting)]
    costs: dict[str, float] = {}

    def timed(name: str, operations: list[Callable[[], object]]) -> None:
        costs[name] = median_per_op(operations)

    def refill() -> None:  # keep the backlog at `waiting` after an operation took some
        backlog.extend(broker.async_ask(i, tag=BACKLOG) for i in range(waiting - broker.len()))

    extra: list[Pending] = []
    timed("enqueue", [lambda i=i: extra.append(broker.async_ask(i)) for i in range(ops)])
    for pending in extra:
        pending.cancel()
    timed("match", [broker.nb_ask_r] * min(ops, waiting))
    refill()
    queued = [p for p in backlog if p.result is None and not p.cancelled]
    chosen = rng.sample(queued, min(ops, len(queued)))
    timed("Pending.cancel", [p.cancel for p in chosen])
    refill()
    tagged = [broker.async_ask(i, tag=("one", i)) for i in range(ops)]
    timed("cancel(tag)", [lambda i=i: broker.cancel(("one", i)) for i in range(ops)])
    assert all(p.cancelled for p in tagged)
    async with trio.open_nursery() as nursery:
        for _ in range(ops):
            nursery.start_soon(broker.ask, 0)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        nursery.cancel_scope.cancel()
    costs["trio cancel"] = per_op(time.perf_counter() - start, ops)
    assert broker.len() == waiting
    broker.close()
    return costs


def best(policy: QueuePolicy, waiting: int, ops: int, rounds: int) -> dict[str, float]:
    """The best of ``rounds`` rounds, with the cyclic garbage collector paused.

    (A full collection over a backlog of 10**5 objects would land in one
    operation's figure and dwarf it; nothing here makes reference cycles.)
    """
    rng = random.Random(waiting)
    results = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            results.append(trio.run(measure, policy, waiting, ops, rng))
        finally:
            gc.enable()
    return {name: min(r[name] for r in results) for name in OPERATIONS}


def table(title: str, columns: list[str], rows: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print("| " + " | ".join(columns + [f"{columns[-1]} / {columns[1]}"]) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for name, values in rows.items():
        cells = [f"{v:.2f}" for v in values] + [f"{values[-1] / values[0]:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="stop at 10**5 waiting")
    parser.add_argument("--ops", type=int, default=1000, help="operations timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [10, 10**3, 10**5] + ([] if args.quick else [10**6])
    columns = ["policy / operation (µs per op)"] + [f"W={w:,}" for w in sizes]
    rows: dict[str, list[float]] = {}
    for name, policy in POLICIES.items():
        figures = [best(policy, w, args.ops, args.rounds) for w in sizes]
        for op in OPERATIONS:
            rows[f"{name} {op}"] = [f[op] for f in figures]
    table("Cost per operation against requests waiting", columns, rows)

    waiting = sizes[-1] if args.quick else 10**5
    key_counts = [10, 10**3, 10**5]
    fair_rows: dict[str, list[float]] = {}
    figures = []
    for keys in key_counts:
        fair = FairQueue(TimeoutQueue(timeout=None), key=lambda v, k=keys: v % k)
        figures.append(best(fair, waiting, args.ops, args.rounds))
    for op in OPERATIONS:
        fair_rows[f"FairQueue {op}"] = [f[op] for f in figures]
    fair_columns = [f"FairQueue, W={waiting:,} (µs per op)"] + [f"keys={k:,}" for k in key_counts]
    table("FairQueue: cost per operation against active keys", fair_columns, fair_rows)


if __name__ == "__main__":
    main()
