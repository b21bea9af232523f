"""change_config is prepared, then committed: a rejected change changes nothing.

api.md rule 3, queues.md Q7, regulation.md M2 and R17; issue 9 defects 1 and 2.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from raising_parts import (
    Boom,
    FlakyQueue,
    RaisingCloseMeter,
    RaisingInitQueue,
    RaisingMeter,
    RaisingValve,
    RecordingMeter,
    StampingQueue,
    raising_key,
    unchecked,
)

from sbroker import Broker, Drop, Go, open_broker
from sbroker.meters import OverloadMeter
from sbroker.queues import CodelQueue, DropQueue, FairQueue, TimeoutQueue
from sbroker.regulator import OpenValve, RateValve, Regulator, open_regulator

Result = Go | Drop


async def park(
    nursery: trio.Nursery, ask: Callable[[Any], Awaitable[Result]], values: range
) -> dict[Any, Result]:
    """Start one waiting caller per value, in order; their answers land in the dict."""
    results: dict[Any, Result] = {}

    async def caller(value: Any) -> None:
        results[value] = await ask(value)

    for value in values:
        nursery.start_soon(caller, value)
        await trio.sleep(0.01)
    return results


async def serve_all(broker: Broker, count: int) -> list[Any]:
    served = []
    for _ in range(count):
        result = await broker.ask_r()
        assert isinstance(result, Go)
        served.append(result.value)
    return served


@pytest.mark.parametrize(
    ("policy", "error"),
    [
        (FairQueue(queue=DropQueue(), key=raising_key(1)), Boom),  # the user's key raises
        (RaisingInitQueue(), Boom),
        (unchecked(CodelQueue(), target=1e300), OverflowError),
        (unchecked(TimeoutQueue(), timeout=1e300), OverflowError),
    ],
)
async def test_failed_change_to_another_class_keeps_every_waiter(
    autojump_clock: trio.testing.MockClock, policy: Any, error: type[Exception]
) -> None:
    # Q7, api.md rule 3; issue 9 defect 1: the waiters used to be lost.
    async with open_broker(ask=DropQueue()) as broker:
        async with trio.open_nursery() as nursery:
            results = await park(nursery, broker.ask, range(3))
            before = broker.config()
            with pytest.raises(error):
                broker.change_config(ask=policy)
            assert broker.config() == before
            assert broker.len() == 3
            assert await serve_all(broker, 3) == [0, 1, 2]
        assert all(isinstance(result, Go) for result in results.values())


async def test_failed_same_class_change_is_not_half_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # api.md rule 3; issue 9 defect 2: out and max_len used to be applied.
    bad = unchecked(TimeoutQueue(timeout=1.0, out="lifo", max_len=2), timeout=1e300)
    async with open_broker(ask=TimeoutQueue(timeout=None)) as broker:
        async with trio.open_nursery() as nursery:
            results = await park(nursery, broker.ask, range(3))
            with pytest.raises(OverflowError):
                broker.change_config(ask=bad)
            assert broker.config()[0] == TimeoutQueue(timeout=None)
            assert broker.len() == 3
            assert await serve_all(broker, 3) == [0, 1, 2]  # still fifo, nothing trimmed
        assert all(isinstance(result, Go) for result in results.values())


async def test_failed_same_class_config_change_leaves_the_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A custom state whose config_change raises (at commit): nothing else is applied.
    log: list[str] = []
    async with open_broker(ask=FlakyQueue(), meters=[RecordingMeter(log)]) as broker:
        async with trio.open_nursery() as nursery:
            await park(nursery, broker.ask, range(3))
            before = broker.config()
            with pytest.raises(Boom):
                broker.change_config(ask=FlakyQueue(fail_change=True), ask_r=DropQueue(), meters=[])
            assert broker.config() == before
            assert log == ["init"]  # the meter was neither closed nor changed
            assert await serve_all(broker, 3) == [0, 1, 2]


async def test_meter_init_failure_leaves_old_meters_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # M2; issue 9 defect 2: old-only meters used to be closed before the new init raised.
    log: list[str] = []
    kept = OverloadMeter()
    async with open_broker(meters=[RecordingMeter(log), kept]) as broker:
        with pytest.raises(Boom):
            broker.change_config(meters=[OverloadMeter(target=0.5), RaisingMeter()])
        assert log == ["init"]
        assert broker.config()[2] == (RecordingMeter(log), kept)
        broker.change_config(meters=[kept])  # still installed: a later change closes it
        assert log == ["init", "close"]


async def test_meter_failure_rejects_the_queue_part_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Drops the new queue policy makes while being prepared are only answered at commit.
    async with open_broker(ask=TimeoutQueue(timeout=None)) as broker:
        async with trio.open_nursery() as nursery:
            results = await park(nursery, broker.ask, range(3))
            with pytest.raises(Boom):
                broker.change_config(ask=DropQueue(max_len=1), meters=[RaisingMeter()])
            await trio.sleep(1)
            assert results == {}  # nobody was dropped
            assert broker.len() == 3
            broker.change_config(ask=DropQueue(max_len=1))  # the same change, committed
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(results) == [1, 2]  # Q12: tail drop keeps the oldest
            assert all(isinstance(results[value], Drop) for value in (1, 2))
            assert await serve_all(broker, 1) == [0]


async def test_change_keeps_order_when_the_state_has_no_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The fallback for custom states without snapshot(): terminate, and on failure
    # rebuild the running policy from the same requests.
    async with open_broker(ask=FlakyQueue()) as broker:
        async with trio.open_nursery() as nursery:
            await park(nursery, broker.ask, range(3))
            broker._ask.state = _NoSnapshot(broker._ask.state)  # type: ignore[assignment]
            with pytest.raises(Boom):
                broker.change_config(ask=RaisingInitQueue())
            assert broker.len() == 3
            assert await serve_all(broker, 3) == [0, 1, 2]


class _NoSnapshot:
    """A queue state without the optional snapshot()."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "snapshot":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)


async def test_regulator_change_rejected_by_the_valve_keeps_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # R17: the queue part is not applied when the valve part fails.
    async with open_regulator(queue=TimeoutQueue(timeout=None), valve=OpenValve(max_size=0)) as reg:
        async with trio.open_nursery() as nursery:
            results = await park(nursery, reg.ask, range(3))
            before = reg.config()
            for valve in (RaisingValve(), unchecked(RateValve(), interval=1e300)):
                with pytest.raises((Boom, OverflowError)):
                    reg.change_config(queue=DropQueue(max_len=1), valve=valve)
                assert reg.config() == before
                assert reg.len() == 3
            assert results == {}
            reg.change_config(valve=OpenValve(max_size=3))
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(results) == [0, 1, 2]
            assert reg.size() == 3
            for result in results.values():
                assert isinstance(result, Go)
                reg.done(result.ref)


async def test_regulator_failed_queue_change_keeps_waiters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reg = Regulator(queue=TimeoutQueue(timeout=None), valve=OpenValve(max_size=0))
    pendings = [reg.async_ask(value) for value in range(3)]
    with pytest.raises(Boom):
        reg.change_config(queue=FairQueue(queue=DropQueue(), key=raising_key(2)))
    assert reg.len() == 3
    reg.change_config(valve=OpenValve(max_size=3))
    assert [isinstance(pending.result, Go) for pending in pendings] == [True] * 3
    reg.close()


async def test_meter_close_raising_at_commit_still_installs_the_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # M2: the commit runs every step; the meter's exception is raised after it.
    log: list[str] = []
    async with open_broker(meters=[RaisingCloseMeter()]) as broker:
        with pytest.raises(Boom):
            broker.change_config(ask=DropQueue(), meters=[RecordingMeter(log)])
        assert broker.config()[0] == DropQueue()
        assert broker.config()[2] == (RecordingMeter(log),)
        assert log == ["init"]


async def test_trial_state_does_not_write_on_the_queued_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A same-class change is tried on copies: an abandoned trial leaves the requests alone.
    broker = Broker(ask=StampingQueue(stamp="first"))
    pendings = [broker.async_ask(value) for value in range(2)]
    with pytest.raises(Boom):
        broker.change_config(ask=StampingQueue(stamp="trial"), meters=[RaisingMeter()])
    assert [broker.nb_ask_r().value for _ in pendings] == [0, 1]  # type: ignore[union-attr]
