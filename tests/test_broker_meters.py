"""Meters driven by a broker under MockClock (regulation.md M2-M5, M8-M11, P5-P13)."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import Broker, Drop, Go, open_broker
from sbroker.meters import OverloadMeter, PieMeter, Sample
from sbroker.queues import TimeoutQueue

MS = 1_000_000


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


def meter_state(host: Broker, meter_class: type) -> Any:
    """The running state of the host's meter of ``meter_class`` (test introspection)."""
    return next(state for meter, state in host._meters if type(meter) is meter_class)


class RecordingMeter:
    """A user-written meter (the protocol of docs/meters.md): records every sample."""

    def __init__(self, every: int | None = None) -> None:
        self.samples: list[Sample] = []
        self.every = every

    def init(self, host: object, now: int) -> tuple[RecordingMeter, int | None]:
        return self, None if self.every is None else now + self.every

    def update(self, sample: Sample) -> int | None:
        self.samples.append(sample)
        return None if self.every is None else sample.time + self.every

    def config_change(self, meter: object, now: int) -> None:
        return None

    def close(self) -> None:
        self.samples.append("closed")  # type: ignore[arg-type]


async def test_samples_follow_m3_nudges_and_m5_relative_time(
    clock: trio.testing.MockClock,
) -> None:
    recorder = RecordingMeter()
    async with open_broker(meters=[recorder]) as broker:
        await trio.sleep(1)
        assert recorder.samples == []  # no call yet: no pass
        broker.async_ask("a")  # M3: the first call of a new host nudges
        await trio.testing.wait_all_tasks_blocked()
        assert len(recorder.samples) == 1
        sample = recorder.samples[0]
        assert sample.time == 1000 * MS and sample.queue_delay == 0
        assert (sample.ask_len, sample.ask_r_len) == (1, 0)
        assert sample.relative_time == 0  # M5: asks have waited 0 so far
        await trio.sleep(0.3)
        broker.async_ask("b")  # first call after the pass: one more pass
        broker.async_ask("c")  # same burst: no further pass
        await trio.testing.wait_all_tasks_blocked()
        assert len(recorder.samples) == 2
        assert recorder.samples[1].relative_time == 300 * MS  # oldest ask waited 300 ms
        await trio.sleep(0.2)
        broker.nb_ask_r()  # matches "a"
        await trio.testing.wait_all_tasks_blocked()
        assert recorder.samples[2].relative_time == 200 * MS  # oldest is now "b"
    assert recorder.samples[-1] == "closed"


async def test_relative_time_turns_negative_when_workers_wait(
    clock: trio.testing.MockClock,
) -> None:
    # regulation.md property 7: ask_rs waiting => rt <= 0.
    recorder = RecordingMeter(every=100 * MS)
    async with open_broker(meters=[recorder]) as broker:
        broker.async_ask_r("w")
        await trio.sleep(0.45)
    waiting = [s for s in recorder.samples if isinstance(s, Sample) and s.ask_r_len]
    assert waiting and all(s.relative_time <= 0 for s in waiting)
    assert waiting[-1].relative_time == -400 * MS


async def test_pie_short_circuits_when_no_worker_comes_and_recovers(
    clock: trio.testing.MockClock,
) -> None:
    pie = PieMeter(ask=dict(target=0.01, interval=0.1), update=0.1, rng=random.Random(7))
    async with open_broker(ask=TimeoutQueue(timeout=1.0), meters=[pie]) as broker:
        state = meter_state(broker, PieMeter)
        answers: list[tuple[float, Go | Drop]] = []

        async def client() -> None:
            answers.append((trio.current_time(), await broker.ask()))

        async with trio.open_nursery() as nursery:
            for _ in range(400):  # 20 s of clients, nobody serves them
                nursery.start_soon(client)
                await trio.sleep(0.05)
            assert state.published("ask") == 1.0  # P6: p rose to 1 within the run
            rising = [t for t, answer in answers if answer == Drop(0)]
            assert rising and rising[0] < 10.0  # short-circuited within bounded time
            assert broker.async_ask().result == Drop(0)  # P12: at the door, sojourn 0
            assert broker.len() <= 1  # P11: only min_len=0 ... nothing else enters

            async def worker() -> None:
                while True:
                    if isinstance(await broker.ask_r(), Go):
                        await trio.sleep(0.001)

            nursery.start_soon(worker)
            served_before = sum(isinstance(a, Go) for _, a in answers)
            for _ in range(400):  # 20 s with a fast worker: p decays, asks get in again
                nursery.start_soon(client)
                await trio.sleep(0.05)
            assert state.probability("ask") < 0.01
            assert sum(isinstance(a, Go) for _, a in answers) > served_before + 300
            nursery.cancel_scope.cancel()


async def test_pie_gate_does_not_nudge_or_touch_queues(clock: trio.testing.MockClock) -> None:
    # P12/property 4: a short-circuited request leaves queues and M5 state untouched.
    pie = PieMeter(max_len=0)
    recorder = RecordingMeter()
    async with open_broker(meters=[pie, recorder]) as broker:
        await trio.testing.wait_all_tasks_blocked()
        assert broker.nb_ask() == Drop(0)
        assert broker.async_ask_r().result == Drop(0)
        assert broker.dynamic_ask() == Drop(0)
        assert await broker.ask() == Drop(0)
        await trio.testing.wait_all_tasks_blocked()
        assert broker.len() == broker.len_r() == 0  # public calls: these nudge
        await trio.testing.wait_all_tasks_blocked()
        passes = len(recorder.samples)
        assert broker.nb_ask() == Drop(0)
        await trio.testing.wait_all_tasks_blocked()
        assert len(recorder.samples) == passes  # gated calls do not nudge
        broker.change_config(meters=[recorder])  # P13: the protector leaves with its meter
        assert isinstance(broker.async_ask(), object) and broker.len() == 1


async def test_overload_alarm_sets_and_clears(
    clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[object, bool, str]] = []
    meter = OverloadMeter(
        target=0.01, interval=0.1, on_alarm=lambda host, on, what: calls.append((host, on, what))
    )
    caplog.set_level(logging.INFO, logger="sbroker")
    async with open_broker(meters=[meter]) as broker:
        for _ in range(10):  # a task hogging the event loop for 50 ms at a time
            broker.nb_ask()  # a call: the broker wants a meter pass now (M3)
            clock.jump(0.05)  # ...but the loop is busy for 50 ms before it can run
            await trio.testing.wait_all_tasks_blocked()
        assert broker.alarms() == frozenset({"message_queue_slow"})  # M11
        assert broker.statistics().scheduling_lag >= 50 * MS
        assert calls == [(broker, True, "message_queue_slow")]
        for _ in range(20):  # the loop is free again
            broker.nb_ask()
            await trio.sleep(0.02)
        assert broker.alarms() == frozenset()
        assert calls[-1] == (broker, False, "message_queue_slow")
    levels = [r.levelno for r in caplog.records if "message_queue_slow" in r.getMessage()]
    assert levels == [logging.WARNING, logging.INFO]


async def test_meters_in_change_config(clock: trio.testing.MockClock) -> None:
    # M2: same class keeps its state, new ones start, removed ones close.
    first = RecordingMeter()
    overload = OverloadMeter(target=0.01, interval=0.1)
    async with open_broker(meters=[overload]) as broker:
        state = meter_state(broker, OverloadMeter)
        broker.change_config(meters=[OverloadMeter(target=0.02, interval=0.1), first])
        assert meter_state(broker, OverloadMeter) is state
        assert broker.config()[2] == (OverloadMeter(target=0.02, interval=0.1), first)
        broker.change_config(meters=[])
        assert first.samples[-1] == "closed"
        with pytest.raises(ValueError, match="meters"):
            broker.change_config(meters=[overload, overload])
        assert broker.config()[2] == ()


def test_meter_validation() -> None:
    with pytest.raises(ValueError, match="meters"):
        Broker(meters=[OverloadMeter(), OverloadMeter(target=1)])
    with pytest.raises(TypeError, match="meters"):
        Broker(meters=[OverloadMeter])  # type: ignore[list-item]


async def test_statistics(clock: trio.testing.MockClock) -> None:
    async with open_broker(ask=TimeoutQueue(timeout=1.0)) as broker:
        empty = broker.statistics()
        assert empty.ask.go == empty.ask.drop == 0 and empty.ask.sojourn_p50 is None
        for wait in (0.1, 0.2, 0.3):
            broker.async_ask()
            await trio.sleep(wait)
            broker.nb_ask_r()
        broker.async_ask()
        await trio.sleep(2)  # times out
        assert broker.nb_ask_r() == Drop(0)
        stats = broker.statistics()
    assert (stats.ask.go, stats.ask.drop, stats.ask_r.go, stats.ask_r.drop) == (3, 1, 3, 1)
    assert (stats.ask.sojourn_p50, stats.ask.sojourn_p99) == (200 * MS, 300 * MS)
    assert stats.ask_r.sojourn_p99 == 0 and stats.ask.waiting == 0
    with pytest.raises(AttributeError):
        stats.ask.go = 5  # type: ignore[misc]
