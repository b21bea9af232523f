"""OpenValve (regulation.md V5): worked example, validation, state machine."""

from __future__ import annotations

import pytest
from valve_harness import CLOSED, MACHINE_SETTINGS, OPEN, ValveMachine, ms

from sbroker.regulator import OpenValve, ValveState


def test_worked_example() -> None:
    """V5 table (max=2), row by row: result, n, status, base."""
    state, verdict = OpenValve(max_size=2).init({}, ms(0))
    assert isinstance(state, ValveState)
    assert (verdict, state.size()) == (OPEN, 0)
    assert state.ask("A", "a", ms(10)) == (ms(0), OPEN)
    assert state.size() == 1
    assert state.ask("B", "b", ms(20)) == (ms(0), CLOSED)
    assert state.size() == 2
    assert state.continue_("A", ms(30)) == ("go", ms(30), CLOSED)
    assert state.size() == 2
    assert state.done("A", ms(40)) == (True, OPEN)
    assert (state.size(), state._base) == (1, ms(40))  # type: ignore[attr-defined]
    assert state.ask("C", "c", ms(50)) == (ms(40), CLOSED)
    assert state.size() == 2
    assert state.config_change(OpenValve(max_size=1), ms(60)) == CLOSED
    assert state.size() == 2
    assert state.continue_("B", ms(70)) == ("done", None, CLOSED)
    assert state.size() == 1
    assert state.done("C", ms(80)) == (True, OPEN)
    assert (state.size(), state._base) == (0, ms(80))  # type: ignore[attr-defined]
    assert state.terminate() == {}


def test_unbounded_reports_creation_time() -> None:
    """V5: with max_size=None, base stays the creation time."""
    state, verdict = OpenValve().init({}, ms(7))
    assert verdict == OPEN
    for t, ref in enumerate("ABCD"):
        assert state.ask(ref, None, ms(10 * t + 10)) == (ms(7), OPEN)
    assert state.done("A", ms(100)) == (True, OPEN)
    assert state.ask("E", None, ms(110)) == (ms(7), OPEN)
    assert state.open_time() == ms(7)
    assert state.update(-5, ms(120)) == OPEN  # updates ignored
    assert state.timeout(ms(130)) == OPEN


def test_zero_max_is_always_closed() -> None:
    state, verdict = OpenValve(max_size=0).init({"x": 1}, 0)
    assert verdict == CLOSED and state.open_time() is None
    assert state.continue_("x", 5) == ("done", None, CLOSED)  # V4: n > max
    assert state.size() == 0


def test_handover_keeps_locks() -> None:
    """R17: init with running locks; terminate gives them back."""
    state, verdict = OpenValve(max_size=2).init({"a": 1, "b": 2, "c": 3}, ms(5))
    assert verdict == CLOSED and state.size() == 3
    assert state.continue_("a", ms(6)) == ("done", None, CLOSED)
    assert state.done("b", ms(7)) == (True, OPEN)
    assert state._base == ms(7)  # type: ignore[attr-defined]
    assert state.terminate() == {"c": 3}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_size": -1}, ValueError),
        ({"max_size": 1.5}, TypeError),
        ({"max_size": True}, TypeError),
        ({"max_size": "2"}, TypeError),
    ],
)
def test_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match="max_size"):
        OpenValve(**kwargs)  # type: ignore[arg-type]


class OpenMachine(ValveMachine):
    start_class = OpenValve


TestOpenMachine = OpenMachine.TestCase
TestOpenMachine.settings = MACHINE_SETTINGS
