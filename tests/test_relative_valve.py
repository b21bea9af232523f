"""RelativeValve (regulation.md V6, V7): worked example, validation, state machine."""

from __future__ import annotations

import pytest
from valve_harness import CLOSED, MACHINE_SETTINGS, OPEN, ValveMachine, internals, ms

from sbroker.regulator import RelativeValve


def test_worked_example() -> None:
    """V7 table (min=1, max=3, target 100 ms), row by row: result, n, last, status."""
    state, verdict = RelativeValve(min_size=1, max_size=3).init({}, ms(0))

    def row() -> tuple[int, int | None]:
        return state.size(), internals(state)["last"]

    # t=0 init: n=0, last None, open (n < min)
    assert (verdict, row()) == (OPEN, (0, None))
    # t=10 ask A: open_time 0 (reaching min keeps last)
    assert (state.ask("A", "a", ms(10)), row()) == ((ms(0), CLOSED), (1, None))
    # t=20 update 50
    assert (state.update(ms(50), ms(20)), row()) == (OPEN, (1, ms(50)))
    # t=30 ask B: open_time 20 (one ask per fast update)
    assert (state.ask("B", "b", ms(30)), row()) == ((ms(20), CLOSED), (2, None))
    # t=40 update -20
    assert (state.update(ms(-20), ms(40)), row()) == (OPEN, (2, ms(-20)))
    # t=50 continue B: GO, open_time 40
    assert (state.continue_("B", ms(50)), row()) == (("go", ms(40), CLOSED), (2, None))
    # t=60 continue B: DONE
    assert (state.continue_("B", ms(60)), row()) == (("done", None, CLOSED), (1, None))
    # t=70 done A: DONE, base 70
    assert (state.done("A", ms(70)), row()) == ((True, OPEN), (0, None))
    assert internals(state)["base"] == ms(70)
    # t=80 update 150: open (n < min), open_time 70
    assert (state.update(ms(150), ms(80)), row()) == (OPEN, (0, ms(150)))
    assert state.open_time() == ms(70)


def test_done_never_restores_last() -> None:
    """V7: above min the valve stays closed until the next update below target."""
    state, _ = RelativeValve(target=0.1).init({}, 0)
    assert state.update(ms(10), ms(1)) == OPEN
    assert state.open_time() == ms(1)
    assert state.ask("A", None, ms(2)) == (ms(1), CLOSED)
    assert state.done("A", ms(3)) == (True, CLOSED)
    assert state.open_time() is None
    assert state.timeout(ms(4)) == CLOSED
    assert state.update(ms(100), ms(5)) == CLOSED  # equal to target is not fast
    assert state.update(ms(99), ms(6)) == OPEN


def test_continue_edges() -> None:
    """V4: unknown ref; n < min; n == min; n > max."""
    state, _ = RelativeValve(min_size=2, max_size=2).init({"a": 1}, ms(1))
    assert state.continue_("zz", ms(2)) == ("not_found", None, OPEN)
    assert state.continue_("a", ms(3)) == ("go", ms(1), OPEN)  # n < min: GO(base)
    assert state.ask("b", 2, ms(4)) == (ms(1), CLOSED)
    assert state.continue_("a", ms(5)) == ("go", ms(5), CLOSED)  # n == min: GO(now)
    assert state.config_change(RelativeValve(min_size=0, max_size=1), ms(6)) == CLOSED
    assert state.continue_("a", ms(7)) == ("done", None, CLOSED)  # n > max
    assert state.terminate() == {"b": 2}


def test_config_change_keeps_last() -> None:
    """V7: a new target reinterprets the kept last update."""
    state, _ = RelativeValve(target=0.01).init({}, 0)
    assert state.update(ms(50), ms(1)) == CLOSED
    assert state.config_change(RelativeValve(target=0.1), ms(2)) == OPEN
    assert state.ask("A", None, ms(3)) == (ms(1), CLOSED)


def test_negative_target() -> None:
    """V6: target may be negative."""
    state, _ = RelativeValve(target=-0.05).init({}, 0)
    assert state.update(ms(-50), 1) == CLOSED
    assert state.update(ms(-51), 2) == OPEN


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"target": float("nan")}, ValueError, "target"),
        ({"target": float("inf")}, ValueError, "target"),
        ({"target": None}, TypeError, "target"),
        ({"target": True}, TypeError, "target"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"min_size": 1.0}, TypeError, "min_size"),
        ({"max_size": -1}, ValueError, "max_size"),
        ({"max_size": False}, TypeError, "max_size"),
        ({"min_size": 3, "max_size": 2}, ValueError, "max_size"),  # V2
    ],
)
def test_validation(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        RelativeValve(**kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    assert RelativeValve() == RelativeValve(target=0.1, min_size=0, max_size=None)
    RelativeValve(min_size=2, max_size=2)  # equal bounds are fine


class RelativeMachine(ValveMachine):
    start_class = RelativeValve


TestRelativeMachine = RelativeMachine.TestCase
TestRelativeMachine.settings = MACHINE_SETTINGS
