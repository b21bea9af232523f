"""A broker or regulator belongs to one trio run (api.md Time; issue 9 defect 7).

Times from two runs' clocks cannot be compared: using a host in another run
raises ``RuntimeError`` instead of answering with times that break
``sojourn_time >= 0``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import Broker, Drop
from sbroker.regulator import OpenValve, Regulator


def in_run(call: Callable[[], Awaitable[Any]], start: float = 0.0) -> Any:
    """Run ``call`` in a fresh trio run whose mock clock starts at ``start`` seconds."""

    async def bounded() -> Any:
        with trio.fail_after(60):  # a host that waits instead of raising fails, not hangs
            return await call()

    clock = trio.testing.MockClock(autojump_threshold=0)
    clock.jump(start)
    return trio.run(bounded, clock=clock)


async def _make_broker() -> Broker:
    broker = Broker()
    broker.async_ask("left over")  # still queued when the run ends
    return broker


def test_broker_used_in_another_run_raises() -> None:
    broker = in_run(_make_broker, start=100.0)

    async def second_run() -> None:
        with pytest.raises(RuntimeError, match="another trio run"):
            await broker.ask_r()  # used to match the left-over ask, relative_time < 0
        for call in (broker.nb_ask_r, broker.async_ask, broker.len, lambda: broker.cancel(1)):
            with pytest.raises(RuntimeError, match="another trio run"):
                call()
        with pytest.raises(RuntimeError, match="another trio run"):
            await broker.run()

    in_run(second_run)
    broker.close()  # closing works anywhere, with the clock of the host's own run


def test_host_created_outside_a_run_belongs_to_the_first_run_using_it() -> None:
    broker = Broker()
    regulator = Regulator(valve=OpenValve(max_size=0))

    async def first_run() -> None:
        assert broker.nb_ask() == Drop(0)
        regulator.async_ask()

    async def second_run() -> None:
        with pytest.raises(RuntimeError, match="another trio run"):
            await broker.ask()
        with pytest.raises(RuntimeError, match="another trio run"):
            await regulator.ask()
        with pytest.raises(RuntimeError, match="another trio run"):
            regulator.size()

    in_run(first_run, start=50.0)
    in_run(second_run)


def test_host_used_outside_any_run_raises() -> None:
    broker = in_run(_make_broker)
    with pytest.raises(RuntimeError):
        broker.nb_ask()


def test_host_used_from_a_concurrent_run_in_another_thread_raises() -> None:
    """The cheap check (the run's thread while the run lives) still sees another run."""
    broker = Broker()
    regulator = Regulator(valve=OpenValve(max_size=0))
    errors: list[BaseException] = []

    async def other_thread_run() -> None:
        for call in (broker.ask_r, regulator.ask):
            try:
                await call()
            except RuntimeError as exc:
                errors.append(exc)
        for sync_call in (broker.nb_ask_r, regulator.size):
            try:
                sync_call()
            except RuntimeError as exc:
                errors.append(exc)

    async def home_run() -> None:
        broker.async_ask("waits in the home run")  # binds both hosts to this run
        regulator.async_ask()
        await trio.to_thread.run_sync(trio.run, other_thread_run)
        assert broker.len() == 1 and regulator.len() == 1  # nothing was matched or granted

    trio.run(home_run)
    assert len(errors) == 4
    assert all("another trio run" in str(error) for error in errors)


def test_host_called_from_a_plain_thread_during_its_run_raises() -> None:
    async def home_run() -> None:
        broker = Broker()
        with pytest.raises(RuntimeError, match="outside trio.run"):
            await trio.to_thread.run_sync(broker.nb_ask)
        assert broker.nb_ask() == Drop(0)  # from its own run it works

    trio.run(home_run)


def test_run_end_is_noticed_by_hosts_of_that_run() -> None:
    """A new run in the same thread is another run, though the thread id is the same."""
    broker = in_run(_make_broker, start=5.0)

    async def same_thread_again() -> None:
        with pytest.raises(RuntimeError, match="another trio run"):
            broker.nb_ask_r()
        assert broker.statistics().ask.waiting == 1  # the left-over ask is untouched

    in_run(same_thread_again)
