"""close() answers every waiter and stops the host whatever user code raises.

api.md rule 1 and Broker.close; regulation.md R18; issue 9 defect 6.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from raising_parts import Boom, FlakyQueue, RaisingCloseMeter, RecordingMeter

from sbroker import Broker, BrokerClosed, Drop
from sbroker.regulator import OpenValve, Regulator

TERMINATE_RAISES = FlakyQueue(max_len=99)  # its state's terminate raises Boom


async def _run_and_close(host: Broker | Regulator) -> list[object]:
    """Three waiters, then close(): it raises Boom, yet answers them and stops run()."""
    results: list[object] = []

    async def waiter(value: int) -> None:
        results.append(await host.ask(value))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            for value in range(3):
                nursery.start_soon(waiter, value)
            await trio.testing.wait_all_tasks_blocked()
            assert host.len() == 3
            with pytest.raises(Boom):
                host.close()
        # the nursery exited: run() returned and every waiter was answered
    assert host.len() == 0
    with pytest.raises(BrokerClosed):
        host.nb_ask()
    return results


async def test_broker_close_survives_a_raising_terminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = Broker(ask=TERMINATE_RAISES)
    results = await _run_and_close(broker)
    assert [type(result) for result in results] == [Drop] * 3


async def test_broker_close_survives_a_raising_meter_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    broker = Broker(ask=FlakyQueue(), meters=[RaisingCloseMeter(), RecordingMeter(log)])
    results = await _run_and_close(broker)
    assert [type(result) for result in results] == [Drop] * 3
    assert log == ["init", "close"]  # the meter after the raising one was closed too


async def test_regulator_close_survives_a_raising_terminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    regulator = Regulator(queue=TERMINATE_RAISES, valve=OpenValve(max_size=0))
    results = await _run_and_close(regulator)
    assert [type(result) for result in results] == [Drop] * 3


async def test_cancelled_run_logs_what_close_raised(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # run() closes the host when cancelled; a user exception is logged, not raised
    # into the nursery, and the waiters are still answered.
    broker = Broker(ask=TERMINATE_RAISES)
    pending = broker.async_ask("x")
    with caplog.at_level(logging.ERROR, logger="sbroker"):
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            nursery.cancel_scope.cancel()
    assert pending.result == Drop(0)
    assert any(record.exc_info and record.exc_info[0] is Boom for record in caplog.records)
