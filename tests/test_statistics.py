"""``Regulator.statistics()`` and the readable ``str()`` of every statistics record."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from sbroker import Drop, Go, RegulatorStatistics, SideStatistics, open_broker
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve, open_regulator

MS = 1_000_000


async def test_regulator_statistics_count_grants_drops_and_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_regulator(
        queue=TimeoutQueue(timeout=1.0), valve=OpenValve(max_size=1)
    ) as regulator:
        empty = regulator.statistics()
        assert (empty.size, empty.ask.waiting, empty.ask.go, empty.ask.drop) == (0, 0, 0, 0)
        assert empty.ask.sojourn_p50 is None
        first = await regulator.ask()  # granted at once (R5): waited 0
        assert isinstance(first, Go)
        assert regulator.nb_ask() == Drop(0)  # closed: refused at the door
        waiting = regulator.async_ask()
        timed_out = regulator.async_ask()
        await trio.sleep(0.3)
        stats = regulator.statistics()
        assert (stats.size, stats.ask.waiting, stats.ask.go, stats.ask.drop) == (1, 2, 1, 1)
        regulator.done(first.ref)  # the drain grants the oldest ask after 300 ms (R7)
        assert isinstance(waiting.result, Go)
        await trio.sleep(1)  # the other one times out
        assert isinstance(timed_out.result, Drop)
        stats = regulator.statistics()
    assert (stats.size, stats.ask.waiting, stats.ask.go, stats.ask.drop) == (1, 0, 2, 2)
    assert (stats.ask.sojourn_p50, stats.ask.sojourn_p99) == (0, 300 * MS)
    assert stats.alarms == frozenset() and stats.scheduling_lag >= 0
    closed = regulator.statistics()
    assert (closed.size, closed.ask.waiting, closed.ask.go) == (0, 0, 2)
    with pytest.raises(AttributeError):
        stats.size = 3  # type: ignore[misc]


def test_regulator_statistics_print_as_a_table_in_ms() -> None:
    stats = RegulatorStatistics(
        size=3,
        ask=SideStatistics(
            waiting=2, go=10, drop=1, sojourn_p50=1_500_000, sojourn_p90=None, sojourn_p99=250 * MS
        ),
        scheduling_lag=20_000,
        alarms=frozenset({"valve_slow"}),
    )
    lines = str(stats).splitlines()
    assert lines[0] == "size 3"
    assert lines[1].split()[:4] == ["side", "waiting", "go", "drop"]
    assert lines[1].count("ms") == 3
    assert lines[2].split() == ["ask", "2", "10", "1", "1.50", "-", "250.00"]
    assert lines[3] == "scheduling lag 0.02 ms; alarms: valve_slow"


async def test_broker_statistics_print_both_sides(autojump_clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        broker.async_ask()
        await trio.sleep(0.25)
        broker.nb_ask_r()
        broker.nb_ask_r()  # nobody waits: dropped
        lines = str(broker.statistics()).splitlines()
    assert lines[1].split() == ["ask", "0", "1", "0", "250.00", "250.00", "250.00"]
    assert lines[2].split() == ["ask_r", "0", "1", "1", "0.00", "0.00", "0.00"]
    assert lines[3] == "scheduling lag 0.00 ms; alarms: none"
