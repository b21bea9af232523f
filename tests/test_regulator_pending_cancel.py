"""Regulator Pending.cancel() is exact (api.md Pending; regulation.md R4, R12; issue 9 defect 3).

A ``RateValve(limit=1)`` created at t=0 first opens at t=1s; no background
task runs here, so the work due then is overdue when ``cancel()`` runs it (R4).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from sbroker import Drop, Go, Pending, RequestCancelled
from sbroker.queues import TimeoutQueue
from sbroker.regulator import RateValve, Regulator

MS = 1_000_000


def queued_ask(timeout: float | None) -> tuple[Regulator, Pending]:
    """A regulator whose valve opens at t=1s, and an async ask queued at t=0."""
    regulator = Regulator(queue=TimeoutQueue(timeout=timeout), valve=RateValve(limit=1))
    return regulator, regulator.async_ask()


async def test_cancel_of_a_request_granted_by_overdue_work_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    regulator, pending = queued_ask(timeout=None)
    autojump_clock.jump(1.5)
    assert pending.cancel() is False
    assert isinstance(pending.result, Go)  # it keeps its answer, and the permit counts
    assert regulator.size() == 1
    assert regulator.done(pending.result.ref) is True
    assert regulator.size() == 0


async def test_cancel_of_a_request_dropped_by_overdue_work_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    regulator, pending = queued_ask(timeout=0.5)
    autojump_clock.jump(0.75)
    assert pending.cancel() is False
    assert pending.result == Drop(750 * MS)
    assert regulator.len() == 0 and regulator.size() == 0


async def test_cancel_of_a_still_queued_request_returns_true(
    autojump_clock: trio.testing.MockClock,
) -> None:
    regulator, pending = queued_ask(timeout=None)
    autojump_clock.jump(0.5)
    assert pending.cancel() is True
    assert pending.result is None
    assert regulator.len() == 0 and regulator.size() == 0
    with pytest.raises(RequestCancelled):
        await pending.wait()
    assert pending.cancel() is False
    autojump_clock.jump(1.0)
    assert regulator.size() == 0  # the valve opened; nothing was granted
