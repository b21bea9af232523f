"""Issue 9 defect 8: every duration and count is bounded and checked at construction.

api.md rule 5: invalid constructor arguments raise ``ValueError``/``TypeError``
naming the parameter; never ``OverflowError``, ``MemoryError``, a hang, or a
configuration that constructs and then crashes its host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import trio
import trio.testing

from sbroker import Broker, Go, Regulator
from sbroker.meters import OverloadMeter, PieMeter, UnderloadMeter
from sbroker.queues import AdaptiveQueue, CodelQueue, DropQueue, FairQueue, TimeoutQueue
from sbroker.regulator import CodelValve, OpenValve, RateValve, RelativeValve

NAN = math.nan
HUGE_INT = 10**400

# (constructor, parameter it must name); every case listed in the issue first.
REJECTED: list[tuple[Callable[[], object], str]] = [
    (lambda: CodelQueue(interval=1e300), "interval"),
    (lambda: AdaptiveQueue(timeout=1e300), "timeout"),
    (lambda: OverloadMeter(interval=1e300), "interval"),
    (lambda: PieMeter(update=1e300), "update"),
    (lambda: RateValve(interval=1e300), "interval"),
    (lambda: CodelValve(interval=1e300), "interval"),
    (lambda: TimeoutQueue(timeout=HUGE_INT), "timeout"),
    (lambda: TimeoutQueue(timeout=1e300), "timeout"),
    (lambda: CodelQueue(target=1e300), "target"),
    (lambda: RelativeValve(target=1e300), "target"),
    (lambda: UnderloadMeter(target=-1e300), "target"),
    (lambda: RateValve(limit=10**18), "limit"),
    # just beyond the documented maxima
    (lambda: TimeoutQueue(timeout=10**9 + 1), "timeout"),
    (lambda: RelativeValve(target=-(10**9) - 0.5), "target"),
    (lambda: DropQueue(max_len=2**31 + 1), "max_len"),
    (lambda: TimeoutQueue(min_len=HUGE_INT), "min_len"),
    (lambda: OpenValve(max_size=HUGE_INT), "max_size"),
    (lambda: PieMeter(max_len=2**31 + 1), "max_len"),
    (lambda: RateValve(limit=2**20 + 1), "limit"),
    (lambda: PieMeter(ask={"target": 1e300, "interval": 1.0}), "target"),
    # huge ints and negatives
    (lambda: CodelQueue(interval=-HUGE_INT), "interval"),
    (lambda: AdaptiveQueue(target=HUGE_INT), "target"),
    (lambda: UnderloadMeter(target=HUGE_INT), "target"),
    (lambda: CodelValve(target=-HUGE_INT), "target"),
    (lambda: TimeoutQueue(timeout=-1e300), "timeout"),
    # nan everywhere: durations, targets, limits
    (lambda: TimeoutQueue(timeout=NAN), "timeout"),
    (lambda: CodelQueue(target=NAN), "target"),
    (lambda: CodelQueue(interval=NAN), "interval"),
    (lambda: AdaptiveQueue(target=NAN), "target"),
    (lambda: AdaptiveQueue(timeout=NAN), "timeout"),
    (lambda: OverloadMeter(target=NAN), "target"),
    (lambda: UnderloadMeter(target=NAN), "target"),
    (lambda: PieMeter(update=NAN), "update"),
    (lambda: PieMeter(ask_r={"target": 0.1, "interval": NAN}), "interval"),
    (lambda: RelativeValve(target=NAN), "target"),
    (lambda: CodelValve(target=NAN), "target"),
    (lambda: RateValve(interval=NAN), "interval"),
    (lambda: FairQueue(queue=TimeoutQueue(), buckets=NAN), "buckets"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("make", "name"), REJECTED)
def test_out_of_range_numbers_are_rejected_naming_the_parameter(
    make: Callable[[], object], name: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=name) as info:
        make()
    assert not isinstance(info.value, OverflowError)
    assert "(" + "F1)" not in str(info.value)  # no spec rule ids in messages


def test_a_fair_queue_of_fair_queues_names_the_parameter_without_rule_ids() -> None:
    with pytest.raises(TypeError, match="queue") as info:
        FairQueue(queue=FairQueue())
    assert "F1" not in str(info.value)


def test_the_documented_maxima_are_accepted() -> None:
    TimeoutQueue(timeout=10**9)
    CodelQueue(target=1e9, interval=1e9)
    AdaptiveQueue(target=1e9, interval=1e9, timeout=1e9)
    RelativeValve(target=-1e9)
    UnderloadMeter(target=-(10**9))
    DropQueue(max_len=2**31)
    RateValve(limit=2**20)


async def test_a_broker_at_the_maxima_runs_and_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The largest accepted durations construct and then work in a running host."""
    policy = CodelQueue(target=1e9, interval=1e9)
    broker = Broker(ask=TimeoutQueue(timeout=10**9), ask_r=policy)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        with trio.move_on_after(5):
            await broker.ask("x")
        assert broker.len() == 0
        pending = broker.async_ask_r("y")
        await trio.sleep(3600)
        assert broker.len_r() == 1
        broker.close()
        assert pending.result is not None
    regulator = Regulator(
        queue=AdaptiveQueue(target=1e9, interval=1e9, timeout=None),
        valve=CodelValve(target=1e9, interval=1e9, min_size=1),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(regulator.run)
        first = await regulator.ask()
        waiting = regulator.async_ask()
        await trio.sleep(3600)
        assert isinstance(first, Go) and waiting.result is None
        assert regulator.done(first.ref)
        assert isinstance(await waiting.wait(), Go)
        regulator.close()
