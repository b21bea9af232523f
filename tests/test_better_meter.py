"""BetterMeter (regulation.md B1-B4), sans-I/O and on a broker and a regulator."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from meter_harness import MS, FakeHost, sample

from sbroker import BetterMeter, Broker
from sbroker.meters import BetterSide
from sbroker.regulator import OpenValve, open_regulator


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


def test_parameters_and_validation() -> None:
    # B1
    meter = BetterMeter(ask=dict(upper=1.0))
    assert meter.ask == BetterSide(upper=1.0)
    assert meter.ask_r == {"upper": 5.0}
    assert BetterMeter(ask={}).ask == {"upper": 5.0}
    assert BetterMeter() == BetterMeter(ask=dict(upper=5.0), ask_r=dict(upper=5.0), update=0.1)
    hash(BetterMeter())
    with pytest.raises(ValueError, match=r"ask\['upper'\]"):
        BetterMeter(ask=dict(upper=-1.0))
    with pytest.raises(ValueError, match="ask_r has unknown keys 'target'"):
        BetterMeter(ask_r=dict(target=1.0))  # type: ignore[typeddict-unknown-key]
    with pytest.raises(TypeError, match="ask must be a dict"):
        BetterMeter(ask=5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="update"):
        BetterMeter(update=0)


def test_worked_example() -> None:
    # B2, B3: the worked example of regulation.md section 5 (uppers 5 s, ms units).
    state, first = BetterMeter().init(FakeHost(), 0)
    assert first == 0
    assert (state.estimate("ask"), state.estimate("ask_r")) == (5000 * MS, 5000 * MS)
    assert state.update(sample(0)) == 100 * MS
    assert (state.estimate("ask"), state.estimate("ask_r")) == (0, 0)
    assert state.update(sample(100 * MS, queue_delay=2 * MS, relative_time=40 * MS)) == 200 * MS
    assert (state.estimate("ask"), state.estimate("ask_r")) == (42 * MS, 2 * MS)
    state.update(sample(150 * MS, relative_time=-7000 * MS))
    assert (state.estimate("ask"), state.estimate("ask_r")) == (0, 5000 * MS)


def test_process_delay_counts() -> None:
    # B3: qd + pd + max(rt, 0).
    state, _ = BetterMeter().init(FakeHost(), 0)
    state.update(sample(0, queue_delay=3, process_delay=4, relative_time=5))
    assert (state.estimate("ask"), state.estimate("ask_r")) == (12, 7)


def test_config_change_keeps_values_close_unpublishes() -> None:
    # B4
    state, _ = BetterMeter().init(FakeHost(), 0)
    state.update(sample(0, relative_time=3000 * MS))
    assert state.config_change(BetterMeter(ask=dict(upper=1.0), update=1.0), 10 * MS) == 10 * MS
    assert state.estimate("ask") == 3000 * MS  # kept until the next sample
    assert state.update(sample(20 * MS, relative_time=3000 * MS)) == 1020 * MS
    assert state.estimate("ask") == 1000 * MS  # the new cap
    state.close()
    assert (state.estimate("ask"), state.estimate("ask_r")) == (None, None)
    with pytest.raises(ValueError, match="side"):
        state.estimate("both")


async def test_broker_estimate(clock: trio.testing.MockClock) -> None:
    # B2: the host publishes; asks waiting raise the ask estimate.
    broker = Broker(meters=[BetterMeter(update=0.1)])
    assert broker.estimate("ask") == 5000 * MS  # pessimistic until the first sample
    async with trio.open_nursery() as outer:
        await outer.start(broker.run)
        await trio.sleep(0.001)
        assert broker.estimate("ask") == 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.ask, 1)
            await trio.sleep(0.25)
            assert broker.estimate("ask") == 200 * MS
            assert broker.estimate("ask_r") == 0
            assert broker.nb_ask_r(2).__class__.__name__ == "Go"
        broker.change_config(meters=[])
        assert broker.estimate("ask") is None  # B4: removed meter unpublishes
        broker.close()
    assert broker.estimate("ask_r") is None
    with pytest.raises(ValueError, match="side"):
        broker.estimate("sideways")


async def test_regulator_estimate(clock: trio.testing.MockClock) -> None:
    # B2 on a regulator: an open valve unused makes ask_r's estimate grow.
    async with open_regulator(valve=OpenValve(), meters=[BetterMeter()]) as regulator:
        await trio.sleep(0.35)
        assert regulator.estimate("ask") == 0
        assert regulator.estimate("ask_r") == 300 * MS
