"""RateValve (regulation.md V10-V13): worked example, validation, state machine."""

from __future__ import annotations

import pytest
from valve_harness import CLOSED, MACHINE_SETTINGS, OPEN, ValveMachine, internals, ms

from sbroker.regulator import RateValve


def closed(wake: int) -> tuple[str, int]:
    return ("closed", ms(wake))


def slots(state: object) -> list[int]:
    return internals(state)["slots"]  # type: ignore[no-any-return]


def test_worked_example() -> None:
    """V13 table (limit=2), row by row: result, slots, status (wake)."""
    state, verdict = RateValve(limit=2).init({}, ms(0))
    # t=0 init: slots [1000, 1000], closed (1000)
    assert (verdict, slots(state)) == (closed(1000), [ms(1000), ms(1000)])
    # t=500 timeout
    assert (state.timeout(ms(500)), slots(state)) == (closed(1000), [ms(1000), ms(1000)])
    # t=1000 timeout: open
    assert (state.timeout(ms(1000)), slots(state)) == (OPEN, [ms(1000), ms(1000)])
    # t=1000 ask A: open_time 1000
    assert (state.ask("A", "a", ms(1000)), slots(state)) == ((ms(1000), OPEN), [ms(1000)])
    # t=1200 ask B: open_time 1000, closed (none)
    assert (state.ask("B", "b", ms(1200)), slots(state)) == ((ms(1000), CLOSED), [])
    # t=1500 done A: slots [2500], closed (2500)
    assert (state.done("A", ms(1500)), slots(state)) == ((True, closed(2500)), [ms(2500)])
    # t=2500 timeout: open
    assert (state.timeout(ms(2500)), slots(state)) == (OPEN, [ms(2500)])
    # t=2600 continue B: GO, open_time 0 (base)
    assert (state.continue_("B", ms(2600)), slots(state)) == (
        ("go", ms(0), closed(3600)),
        [ms(3600)],
    )
    # t=2700 continue B: DONE (no free slot)
    assert (state.continue_("B", ms(2700)), slots(state)) == (
        ("done", None, closed(3600)),
        [ms(3600), ms(3700)],
    )
    assert state.size() == 0


def test_min_size_runs_free() -> None:
    """V13: asks up to min take no slot and report min(base, next_slot)."""
    state, verdict = RateValve(limit=1, interval=1.0, min_size=2).init({}, ms(10))
    assert verdict == OPEN and state.open_time() == ms(10)
    assert state.ask("a", None, ms(20)) == (ms(10), OPEN)
    assert state.ask("b", None, ms(30)) == (ms(10), closed(1010))  # reaching min
    assert slots(state) == [ms(1010)]
    assert state.open_time() == ms(1010)
    assert state.continue_("a", ms(40)) == ("go", ms(40), closed(1010))  # n == min
    # done at n <= min: no slot back, base moves when n was min
    assert state.done("a", ms(50)) == (True, OPEN)
    assert internals(state)["base"] == ms(50)
    assert slots(state) == [ms(1010)]
    assert state.continue_("b", ms(60)) == ("go", ms(50), OPEN)  # n < min: GO(base)
    assert state.open_time() == ms(50)


def test_open_time_below_min_may_be_a_slot() -> None:
    """V13: open_time() = min(base, next_slot) while n < min."""
    state, _ = RateValve(limit=1, interval=0.001, min_size=2).init({"x": 0, "y": 0, "z": 0}, ms(0))
    assert internals(state) == {"base": 0, "slots": [], "overflow": 0}
    state.done("z", ms(5))  # n 3 > min: release -> slot 6
    state.done("y", ms(100))  # n == min: base 100
    assert state.open_time() == ms(6)
    assert state.ask("w", None, ms(101)) == (ms(6), OPEN)


def test_overflow_and_max() -> None:
    """V11, V12: surplus locks are counted in overflow; above max continue is done."""
    state, verdict = RateValve(limit=1, interval=0.01, max_size=2).init(
        {"a": 1, "b": 2, "c": 3}, ms(0)
    )
    assert verdict == CLOSED
    assert internals(state) == {"base": 0, "slots": [], "overflow": 2}
    assert state.continue_("a", ms(1)) == ("done", None, CLOSED)  # n > max
    assert internals(state)["overflow"] == 1
    assert state.continue_("b", ms(2)) == ("done", None, CLOSED)  # no slot: done
    assert internals(state)["overflow"] == 0
    assert state.done("c", ms(3)) == (True, closed(13))
    assert slots(state) == [ms(13)]
    assert state.terminate() == {}


def test_zero_limit_never_opens_above_min() -> None:
    state, verdict = RateValve(limit=0, min_size=1).init({}, 0)
    assert verdict == OPEN
    assert state.ask("a", None, 1) == (0, CLOSED)
    assert state.timeout(ms(10_000)) == CLOSED
    assert state.done("a", ms(10_001)) == (True, OPEN)


def test_config_change_rebuilds() -> None:
    """V13 config_change: kept slots shift by the interval change, missing ones are fresh."""
    state, _ = RateValve(limit=2, interval=1.0).init({}, 0)
    state.timeout(ms(1000))
    state.ask("a", None, ms(1000))  # slots [1000]
    state.done("a", ms(1100))  # slots [1000, 2100]
    assert slots(state) == [ms(1000), ms(2100)]
    assert state.config_change(RateValve(limit=3, interval=0.5), ms(1200)) == OPEN
    assert slots(state) == [ms(500), ms(1600), ms(1700)]
    assert state.config_change(RateValve(limit=1, interval=0.5), ms(1300)) == OPEN
    assert slots(state) == [ms(500)]
    state.ask("b", None, ms(1300))
    state.ask("c", None, ms(1300))  # host breaking V3: the lock is owed (overflow)
    assert internals(state) == {"base": 0, "slots": [], "overflow": 1}
    assert state.config_change(RateValve(limit=4, interval=0.5), ms(1400)) == closed(1900)
    assert slots(state) == [ms(1900), ms(1900)]


def test_updates_ignored() -> None:
    state, verdict = RateValve(limit=1).init({}, 0)
    assert state.update(-(10**12), 5) == verdict


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"limit": -1}, ValueError, "limit"),
        ({"limit": 1.0}, TypeError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"limit": None}, TypeError, "limit"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": float("inf")}, ValueError, "interval"),
        ({"interval": None}, TypeError, "interval"),
        ({"min_size": None}, TypeError, "min_size"),
        ({"max_size": -2}, ValueError, "max_size"),
        ({"min_size": 5, "max_size": 4}, ValueError, "max_size"),  # V2
    ],
)
def test_validation(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        RateValve(**kwargs)  # type: ignore[arg-type]


class RateMachine(ValveMachine):
    start_class = RateValve


TestRateMachine = RateMachine.TestCase
TestRateMachine.settings = MACHINE_SETTINGS
