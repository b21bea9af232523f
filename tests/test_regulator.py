"""The regulator through its public API under MockClock (regulation.md §6, api.md)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from sbroker import BrokerClosed, Drop, Dropped, Go, NotFound, Pending, Stop
from sbroker.queues import DropQueue, TimeoutQueue
from sbroker.regulator import Regulator, open_regulator
from sbroker.regulator.open_valve import OpenValve
from sbroker.regulator.rate_valve import RateValve
from sbroker.regulator.relative_valve import RelativeValve

MS = 1_000_000


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


async def at(ms: float) -> None:
    await trio.sleep_until(ms / 1000)


async def test_worked_example_of_section_6(clock: trio.testing.MockClock) -> None:
    # regulation.md §6 example: a FIFO that never drops, OpenValve(max_size=1), created at 0.
    answers: dict[str, object] = {}
    async with open_regulator(queue=DropQueue(), valve=OpenValve(max_size=1)) as regulator:

        async def asker(name: str) -> None:
            answers[name] = await regulator.ask(name)

        async with trio.open_nursery() as nursery:
            await at(5)
            a = await regulator.ask("A")  # R5
            assert a == Go(a.ref, regulator, -5 * MS, 0)  # type: ignore[union-attr]
            assert (regulator.size(), regulator.len()) == (1, 0)
            await at(10)
            nursery.start_soon(asker, "B")  # R6: waits
            await at(20)
            nursery.start_soon(asker, "C")
            await at(25)
            assert (regulator.size(), regulator.len()) == (1, 2)
            assert regulator.nb_ask("D") == Drop(0)
            await at(30)
            assert regulator.continue_(a.ref) == Go(a.ref, regulator, 0, 0)  # type: ignore[union-attr]  # R8
            assert regulator.len() == 2  # B and C wait on: continue_ goes first
            await at(40)
            assert regulator.done(a.ref) is True  # type: ignore[union-attr]  # R9, drain R7
            await trio.testing.wait_all_tasks_blocked()
            b = answers["B"]
            assert b == Go(b.ref, regulator, 30 * MS, 30 * MS)  # type: ignore[attr-defined]
            assert (regulator.size(), regulator.len()) == (1, 1)
            await at(50)
            assert regulator.done(object()) is False
            await at(60)
            regulator.change_config(valve=OpenValve(max_size=2))  # R17
            await trio.testing.wait_all_tasks_blocked()
            c = answers["C"]
            assert c == Go(c.ref, regulator, 20 * MS, 40 * MS)  # type: ignore[attr-defined]
            assert (regulator.size(), regulator.len()) == (2, 0)
            await at(70)
            assert regulator.continue_(b.ref) == Go(b.ref, regulator, 0, 0)  # type: ignore[attr-defined]
            await at(80)
            regulator.change_config(valve=OpenValve(max_size=1))
            assert regulator.size() == 2  # locks are never revoked
            await at(90)
            assert regulator.continue_(b.ref) == Stop(0)  # type: ignore[attr-defined]  # V4: 2 > max
            assert regulator.size() == 1
            await at(100)
            assert regulator.done(c.ref) is True  # type: ignore[attr-defined]
            assert (regulator.size(), regulator.len()) == (0, 0)
            assert isinstance(regulator.nb_ask(), Go)  # open again


async def test_continue_and_done_on_unknown_refs(clock: trio.testing.MockClock) -> None:
    async with open_regulator() as regulator:
        go = await regulator.ask()
        assert isinstance(go, Go)
        assert regulator.done(go.ref) is True
        assert regulator.done(go.ref) is False  # R9: a second done is False
        assert regulator.continue_(go.ref) == NotFound(0)


async def test_permit_releases_on_every_exit(clock: trio.testing.MockClock) -> None:
    async with open_regulator(valve=OpenValve(max_size=1)) as regulator:
        async with regulator.permit() as go:
            assert isinstance(go, Go) and regulator.size() == 1
        assert regulator.size() == 0
        with pytest.raises(RuntimeError):
            async with regulator.permit():
                raise RuntimeError("boom")
        assert regulator.size() == 0
        with trio.move_on_after(1) as scope:
            async with regulator.permit():
                await trio.sleep_forever()
        assert scope.cancelled_caught and regulator.size() == 0


async def test_permit_raises_dropped(clock: trio.testing.MockClock) -> None:
    async with open_regulator(
        queue=TimeoutQueue(timeout=0.5), valve=OpenValve(max_size=1)
    ) as regulator:
        held = await regulator.ask()
        with pytest.raises(Dropped) as info:
            async with regulator.permit():
                pytest.fail("no permit should be granted")
        assert info.value.drop == Drop(500 * MS)
        assert regulator.done(held.ref)  # type: ignore[union-attr]


async def test_cancelled_waiter_leaves_no_permit(clock: trio.testing.MockClock) -> None:
    # R12 and api.md: a task cancelled while queued is removed; no permit leaks.
    async with open_regulator(valve=OpenValve(max_size=1)) as regulator:
        held = await regulator.ask()
        with trio.move_on_after(1):
            await regulator.ask()
        assert regulator.len() == 0
        assert regulator.done(held.ref)  # type: ignore[union-attr]
        assert regulator.size() == 0


async def test_queued_asks_admitted_as_valve_opens(clock: trio.testing.MockClock) -> None:
    # RateValve stays closed for one interval after start (V12), then admits.
    async with open_regulator(
        queue=TimeoutQueue(timeout=None), valve=RateValve(limit=2, interval=1.0)
    ) as regulator:
        results: list[object] = []

        async def asker() -> None:
            results.append(await regulator.ask())

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(asker)
            await trio.sleep(0.5)
            assert (regulator.len(), regulator.size()) == (3, 0)
            await trio.sleep(0.6)
            assert (regulator.len(), regulator.size()) == (1, 2)
            for result in results:
                assert isinstance(result, Go)
                assert result.sojourn_time == 1000 * MS and result.relative_time == 1000 * MS
            for result in results:
                regulator.done(result.ref)  # type: ignore[attr-defined]
        assert regulator.size() == 1


async def test_async_and_dynamic_asks(clock: trio.testing.MockClock) -> None:
    async with open_regulator(valve=OpenValve(max_size=1)) as regulator:
        first = regulator.dynamic_ask()
        assert isinstance(first, Go)
        pending = regulator.async_ask(tag="t")
        assert isinstance(pending, Pending) and pending.result is None
        other = regulator.dynamic_ask(tag="t")
        assert isinstance(other, Pending)
        assert regulator.cancel("t") == 2
        assert other.cancelled and pending.cancelled
        third = regulator.async_ask()
        assert third.cancel() is True and regulator.len() == 0
        fourth = regulator.async_ask()
        await trio.sleep(0.25)
        regulator.done(first.ref)
        result = await fourth.wait()
        assert isinstance(result, Go) and result.sojourn_time == 250 * MS


async def test_change_config_keeps_permits_and_waiters(clock: trio.testing.MockClock) -> None:
    async with open_regulator(
        queue=TimeoutQueue(timeout=None), valve=OpenValve(max_size=1)
    ) as regulator:
        held = await regulator.ask()
        waiting = regulator.async_ask()
        regulator.change_config(queue=DropQueue())  # Q7: the waiter moves over
        assert regulator.len() == 1
        regulator.change_config(valve=RelativeValve(target=0.1, max_size=1))
        assert regulator.size() == 1 and waiting.result is None  # other class: locks kept
        assert regulator.continue_(held.ref) == Stop(0)  # type: ignore[union-attr]  # not fast
        await trio.testing.wait_all_tasks_blocked()
        assert regulator.size() == 0 and waiting.result is None  # above min and not fast
        regulator.update(-5 * MS)  # fast: opens, the waiter gets its permit
        assert isinstance(waiting.result, Go)
        assert regulator.size() == 1
        from sbroker.meters import UnderloadMeter

        regulator.change_config(meters=[UnderloadMeter()])  # M2 while a permit is held
        regulator.change_config(meters=[UnderloadMeter(target=0.2)], queue=TimeoutQueue())
        assert regulator.size() == 1 and regulator.config()[2] == (UnderloadMeter(target=0.2),)
        assert regulator.done(waiting.result.ref) is True


async def test_update_rejects_non_int(clock: trio.testing.MockClock) -> None:
    async with open_regulator() as regulator:
        with pytest.raises(TypeError, match="relative_time_ns"):
            regulator.update(0.5)  # type: ignore[arg-type]


async def test_close_answers_waiters_and_later_calls_raise(clock: trio.testing.MockClock) -> None:
    async with open_regulator(valve=OpenValve(max_size=0)) as regulator:
        pending = regulator.async_ask()
        await trio.sleep(1)
    assert pending.result == Drop(1000 * MS)
    assert regulator.len() == 0 and regulator.size() == 0
    for call in (
        regulator.nb_ask,
        regulator.async_ask,
        regulator.dynamic_ask,
        lambda: regulator.done(1),
        lambda: regulator.continue_(1),
        lambda: regulator.update(0),
        lambda: regulator.cancel(1),
        lambda: regulator.change_config(queue=DropQueue()),
    ):
        with pytest.raises(BrokerClosed):
            call()
    with pytest.raises(BrokerClosed):
        await regulator.ask()


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="queue"):
        Regulator(queue=OpenValve())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="valve"):
        Regulator(valve=DropQueue())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="valve"):
        Regulator(valve=OpenValve)  # type: ignore[arg-type]


async def test_invalid_change_config_changes_nothing(clock: trio.testing.MockClock) -> None:
    async with open_regulator() as regulator:
        before = regulator.config()
        with pytest.raises(TypeError, match="valve"):
            regulator.change_config(queue=DropQueue(), valve="open")  # type: ignore[arg-type]
        assert regulator.config() == before


async def test_underload_alarm_on_an_unused_open_valve(clock: trio.testing.MockClock) -> None:
    # M13 with M6: an open valve nobody uses for `interval` raises "valve_slow".
    from sbroker.meters import UnderloadMeter

    calls: list[tuple[bool, str]] = []
    meter = UnderloadMeter(
        target=0.1, interval=0.5, on_alarm=lambda host, on, what: calls.append((on, what))
    )
    async with open_regulator(valve=OpenValve(max_size=1), meters=[meter]) as regulator:
        regulator.len()  # a call: a meter pass now
        await trio.sleep(0.2)
        regulator.len()  # open and unused for 200 ms >= target: slow
        await trio.sleep(0.6)
        regulator.len()  # still unused 0.5 s later: the alarm sets
        await trio.testing.wait_all_tasks_blocked()
        assert regulator.alarms() == frozenset({"valve_slow"})
        held = await regulator.ask()  # the valve closes: M6 rt >= 0, fast
        await trio.sleep(0.1)
        regulator.len()
        await trio.sleep(0.6)
        regulator.len()
        await trio.testing.wait_all_tasks_blocked()
        assert regulator.alarms() == frozenset()
        assert calls == [(True, "valve_slow"), (False, "valve_slow")]
        regulator.done(held.ref)  # type: ignore[union-attr]
