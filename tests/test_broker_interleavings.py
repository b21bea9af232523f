"""api.md rules 1-3 under random interleavings of every kind of call.

Each example runs a few hundred random steps against one broker under
MockClock: blocking asks and ask_rs (some cancelled by trio), async and
dynamic requests (some cancelled by tag or through their pending), nb
requests, config changes across policy classes, and time advances. Then the
broker is closed and every request's fate is checked: answered exactly once
or cancelled, matches paired consistently, cancelled callers never matched.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from sbroker import Broker, Drop, Go, Pending
from sbroker.queues import (
    AdaptiveQueue,
    CodelQueue,
    DropQueue,
    FairQueue,
    QueuePolicy,
    TimeoutQueue,
)

SIDES = ("ask", "ask_r")


def random_policy(rng: random.Random) -> QueuePolicy:
    out = rng.choice(["fifo", "lifo"])
    drop = rng.choice(["head", "tail"])
    max_len = rng.choice([None, None, 0, 1, 3, 8])
    min_len = rng.choice([0, 0, 1]) if max_len is None or max_len >= 1 else 0
    timeout = rng.choice([None, 0.0, 0.01, 0.05, 0.2])
    single: list[Callable[[], QueuePolicy]] = [
        lambda: DropQueue(out=out, drop=drop, max_len=max_len),
        lambda: TimeoutQueue(timeout, out=out, drop=drop, min_len=min_len, max_len=max_len),
        lambda: CodelQueue(0.005, 0.02, out=out, drop=drop, min_len=min_len, max_len=max_len),
        lambda: AdaptiveQueue(
            0.005,
            0.02,
            0.1,
            out=rng.choice(["fifo", "lifo", "adaptive"]),
            drop=drop,
            min_len=min_len,
            max_len=max_len,
        ),
    ]
    policy = rng.choice(single)()
    if rng.random() < 0.25:
        return FairQueue(policy, key=lambda value: value % 3)
    return policy


@attrs.define
class Record:
    """One request and everything that happened to it."""

    side: str
    value: int
    kind: str
    answers: list[Any] = attrs.Factory(list)
    cancelled: bool = False
    pending: Pending | None = None


async def drive(seed: int, steps: int) -> list[Record]:
    rng = random.Random(seed)
    broker = Broker(ask=random_policy(rng), ask_r=random_policy(rng))
    records: list[Record] = []
    scopes: list[tuple[trio.CancelScope, Record]] = []
    tags = ["t0", "t1", "t2"]

    async def blocking(record: Record, scope: trio.CancelScope) -> None:
        with scope:
            call = broker.ask if record.side == "ask" else broker.ask_r
            record.answers.append(await call(record.value))
            return
        record.cancelled = True  # only reached when the scope caught a cancellation

    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        async with trio.open_nursery() as tasks:
            for value in range(steps):
                action = rng.random()
                side = rng.choice(SIDES)
                suffix = "" if side == "ask" else "_r"
                if action < 0.30:
                    record = Record(side, value, "blocking")
                    scope = trio.CancelScope()
                    records.append(record)
                    scopes.append((scope, record))
                    tasks.start_soon(blocking, record, scope)
                elif action < 0.50:
                    kind = rng.choice(["async", "dynamic"])
                    result = getattr(broker, f"{kind}_ask{suffix}")(value, tag=rng.choice(tags))
                    record = Record(side, value, kind)
                    if isinstance(result, Pending):
                        record.pending = result
                    else:
                        record.answers.append(result)
                    records.append(record)
                elif action < 0.60:
                    record = Record(side, value, "nb")
                    record.answers.append(getattr(broker, f"nb_ask{suffix}")(value))
                    records.append(record)
                elif action < 0.65:
                    broker.cancel(rng.choice(tags))
                elif action < 0.70:
                    pendings = [r.pending for r in records if r.pending is not None]
                    if pendings:
                        rng.choice(pendings).cancel()
                elif action < 0.78:
                    if scopes:
                        rng.choice(scopes)[0].cancel()
                elif action < 0.83:
                    target = rng.choice(SIDES)
                    broker.change_config(**{target: random_policy(rng)})
                else:
                    await trio.sleep(rng.choice([0, 0.001, 0.004, 0.01, 0.03]))
            await trio.sleep(rng.choice([0, 0.05]))
            await trio.testing.wait_all_tasks_blocked()  # every started task has asked
            broker.close()
        nursery.cancel_scope.cancel()
    for record in records:
        if record.pending is not None:
            if record.pending.result is not None:
                record.answers.append(record.pending.result)
            record.cancelled = record.pending.cancelled
    return records


def check(records: list[Record]) -> None:
    by_ref: dict[Any, list[tuple[Record, Go]]] = {}
    values = {(r.side, r.value): r for r in records}
    for record in records:
        # Rule 1: exactly once: one answer, or a cancellation, never both.
        assert len(record.answers) + record.cancelled == 1, record
        for answer in record.answers:
            assert isinstance(answer, (Go, Drop))
            assert answer.sojourn_time >= 0
            if isinstance(answer, Go):
                by_ref.setdefault(answer.ref, []).append((record, answer))
    for ref, pair in by_ref.items():
        assert len(pair) == 2, (ref, pair)
        (first, first_go), (second, second_go) = pair
        assert {first.side, second.side} == set(SIDES)
        assert first_go.value == second.value and second_go.value == first.value
        assert first_go.relative_time == -second_go.relative_time
        assert first_go.sojourn_time - second_go.sojourn_time == first_go.relative_time
        assert min(first_go.sojourn_time, second_go.sojourn_time) == 0
        # Rule 2: a cancelled caller is never matched.
        assert not values[(first.side, first.value)].cancelled
        assert not values[(second.side, second.value)].cancelled


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_request_is_answered_exactly_once(seed: int) -> None:
    records = trio.run(drive, seed, 250, clock=trio.testing.MockClock(autojump_threshold=0))
    assert records
    check(records)
