"""Releasing a permit of an open OpenValve reads no clock, and changes nothing else.

The regulator inlines the OpenValve's ``done`` on its hot path: while the
valve is open (fewer than ``max_size`` permits run), a release moves no
``base`` (V5), keeps the valve open and has nothing due (R4), so it takes no
clock reading. A release from ``max_size`` still reads the clock: ``base``
moves to that time and the drain (R7) runs then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from sbroker import Go
from sbroker.regulator import OpenValve, Regulator

MS = 1_000_000


class CountingClock(trio.abc.Clock):
    """A clock whose time moves only when a test sets it, counting its readings."""

    def __init__(self) -> None:
        self.now = 0.0
        self.readings = 0

    def start_clock(self) -> None:
        """Nothing to start."""

    def current_time(self) -> float:
        self.readings += 1
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return max(0.0, deadline - self.now)  # the tests never sleep


def run(main: Callable[[CountingClock], Awaitable[Any]]) -> Any:
    clock = CountingClock()
    return trio.run(main, clock, clock=clock)


def released_without_reading(clock: CountingClock, release: Callable[[], Any]) -> Any:
    """Call ``release`` (synchronous) and check that it read no clock."""
    before = clock.readings
    answer = release()
    assert clock.readings == before
    return answer


def test_open_release_reads_no_clock_and_keeps_base() -> None:
    # V5: base is the creation time until the count falls from max_size.
    async def main(clock: CountingClock) -> None:
        regulator = Regulator(valve=OpenValve(max_size=2))  # created at 0
        clock.now = 0.001
        a = await regulator.ask()
        assert a == Go(a.ref, regulator, -1 * MS, 0)  # type: ignore[union-attr]
        clock.now = 0.002
        assert released_without_reading(clock, lambda: regulator.done(a.ref)) is True  # type: ignore[union-attr]
        assert released_without_reading(clock, lambda: regulator.done(a.ref)) is False  # R9
        clock.now = 0.003
        b = await regulator.ask()
        assert b == Go(b.ref, regulator, -3 * MS, 0)  # type: ignore[union-attr]  # base stayed 0
        c = await regulator.ask()  # max_size reached: closed
        clock.now = 0.005
        before = clock.readings
        assert regulator.done(c.ref) is True  # type: ignore[union-attr]
        assert clock.readings > before  # from max_size: base moves to 5 ms
        clock.now = 0.007
        d = await regulator.ask()
        assert d == Go(d.ref, regulator, -2 * MS, 0)  # type: ignore[union-attr]
        assert regulator.size() == 2

    run(main)


def test_permit_block_released_while_open_reads_no_clock() -> None:
    async def main(clock: CountingClock) -> None:
        regulator = Regulator(valve=OpenValve(max_size=3))
        async with regulator.permit():
            pass  # leaving: a release while open
        hold = regulator.permit()
        go = await hold.__aenter__()
        assert regulator.statistics().size == 1  # nothing was released
        released = released_without_reading(clock, lambda: hold.__aexit__(None, None, None))
        await released
        assert regulator.size() == 0 and regulator.done(go.ref) is False
        clock.now = 1.0
        again = await regulator.ask()
        assert again == Go(again.ref, regulator, -1_000 * MS, 0)  # type: ignore[union-attr]

    run(main)


def test_release_without_reading_still_checks_the_run() -> None:
    # One trio run per host: a release outside the regulator's run raises.
    async def main(clock: CountingClock) -> tuple[Regulator, Any]:
        regulator = Regulator(valve=OpenValve(max_size=2))
        return regulator, await regulator.ask()

    regulator, go = run(main)
    with pytest.raises(RuntimeError):
        regulator.done(go.ref)

    async def other_run(clock: CountingClock) -> None:
        with pytest.raises(RuntimeError, match="another trio run"):
            regulator.done(go.ref)

    run(other_run)
    assert regulator.statistics().size == 1  # nothing was released
