"""CodelValve (regulation.md V8, V9): worked example, validation, state machine."""

from __future__ import annotations

import math

import pytest
from valve_harness import CLOSED, MACHINE_SETTINGS, OPEN, ValveMachine, internals, ms

from sbroker.regulator import CodelValve

U = ms(50)  # an update below the 100 ms target
SLOW = ms(150)  # an update above it


def test_worked_example() -> None:
    """V9 table (defaults), row by row: result, count, open_next, phase, status."""
    state, verdict = CodelValve().init({}, ms(0))
    assert verdict == CLOSED  # IDLE

    def row() -> tuple[int, int, object]:
        found = internals(state)
        return found["count"], found["open_next"], found["phase"]

    def waiting(first: str) -> tuple[str, int]:
        return ("waiting", ms(first))

    rows: list[tuple[int, str, tuple[object, ...], object, tuple[int, int, object]]] = [
        # t, op, args, result, (count, open_next, phase)
        (0, "update", (U,), CLOSED, (0, 0, waiting("1000"))),
        (1000, "update", (U,), OPEN, (0, 0, waiting("1000"))),
        (1100, "ask", ("A",), (ms(1000), CLOSED), (1, ms(2100), "await")),
        (1200, "update", (U,), CLOSED, (1, ms(2100), "opening")),
        (2100, "update", (U,), OPEN, (1, ms(2100), "opening")),
        (2150, "ask", ("B",), (ms(2100), CLOSED), (2, ms("2807.106781"), "await")),
        (2200, "update", (SLOW,), CLOSED, (2, ms("2807.106781"), "idle")),
        (2300, "update", (U,), CLOSED, (2, ms("2807.106781"), waiting("3300"))),
        (3300, "update", (U,), OPEN, (2, ms("2807.106781"), waiting("3300"))),
        (3300, "ask", ("C",), (ms(3300), CLOSED), (1, ms(4300), "await")),  # count <= 2
        (3400, "continue_", ("A",), ("done", None, CLOSED), (1, ms(4300), "await")),
        (3500, "update", (U,), CLOSED, (1, ms(4300), "opening")),
        (4300, "update", (U,), OPEN, (1, ms(4300), "opening")),
        (4400, "continue_", ("B",), ("go", ms(4300), CLOSED), (2, ms("5007.106781"), "await")),
        (4500, "update", (U,), CLOSED, (2, ms("5007.106781"), "opening")),
        (5100, "update", (U,), OPEN, (2, ms("5007.106781"), "opening")),
        (5100, "ask", ("D",), (ms("5007.106781"), CLOSED), (3, ms("5584.457050"), "await")),
        (5200, "update", (SLOW,), CLOSED, (3, ms("5584.457050"), "idle")),
        (5300, "update", (U,), CLOSED, (3, ms("5584.457050"), waiting("6300"))),
        (6300, "update", (U,), OPEN, (3, ms("5584.457050"), waiting("6300"))),
        (6300, "ask", ("E",), (ms(6300), CLOSED), (1, ms(7300), "await")),  # count 3-2
    ]
    for t, op, args, result, expected in rows:
        if op == "ask":
            got = state.ask(args[0], None, ms(t))
        else:
            got = getattr(state, op)(args[0], ms(t))
        assert (got, row()) == (result, expected), (t, op)
    assert sorted(state.terminate()) == ["B", "C", "D", "E"]  # type: ignore[type-var]


def test_open_next_steps_are_truncated() -> None:
    """V9: trunc(interval / sqrt(count)) on nanoseconds."""
    assert int(ms(1000) / math.sqrt(2)) == ms("707.106781")
    assert int(ms(1000) / math.sqrt(3)) == ms("577.350269")


def test_restart_reuses_count_when_recent() -> None:
    """V9 restart: count > 2 and now - open_next < 8 * interval -> count -= 2."""
    state, _ = CodelValve(interval=1.0).init({}, 0)
    st: object = state
    state.update(U, 0)
    state.ask("a", None, ms(1000))  # restart: count 1, open_next 2000
    t = ms(1000)
    for ref in "bcd":  # three openings: count 4
        state.update(U, t)
        t = internals(st)["open_next"]
        assert state.update(U, t) == OPEN
        state.ask(ref, None, t)
    assert internals(st)["count"] == 4
    open_next = internals(st)["open_next"]
    state.update(SLOW, t)
    state.update(U, t)  # WAITING(t + 1000)
    restart = t + ms(1000)
    assert restart - open_next < ms(8000)
    assert state.ask("e", None, restart) == (restart, CLOSED)
    assert internals(st)["count"] == 2
    assert internals(st)["open_next"] == restart + int(ms(1000) / math.sqrt(2))


def test_restart_forgets_count_after_a_long_pause() -> None:
    state, _ = CodelValve(interval=0.001).init({}, 0)
    state.update(U - ms(100), 0)
    state._count = 5  # type: ignore[attr-defined]
    state._open_next = 0  # type: ignore[attr-defined]
    assert state.update(U - ms(100), ms(8)) == OPEN  # first = 1 ms
    assert state.ask("a", None, ms(8)) == (ms(1), CLOSED)  # 8 ms >= 8 * interval
    assert (internals(state)["count"], internals(state)["open_next"]) == (1, ms(9))


def test_below_min_and_at_min() -> None:
    """V9: k < min -> base, open; k == min -> base, status(k); V4 continue edges."""
    state, verdict = CodelValve(min_size=2, max_size=3).init({}, ms(5))
    assert verdict == OPEN and state.open_time() == ms(5)
    assert state.ask("a", None, ms(6)) == (ms(5), OPEN)
    assert state.ask("b", None, ms(7)) == (ms(5), CLOSED)
    assert state.open_time() is None
    assert state.continue_("a", ms(8)) == ("go", ms(8), CLOSED)  # n == min
    assert state.continue_("nope", ms(8)) == ("not_found", None, CLOSED)
    assert state.done("a", ms(9)) == (True, OPEN)  # n == min before: base 9
    assert internals(state)["base"] == ms(9)
    assert state.continue_("b", ms(10)) == ("go", ms(9), OPEN)  # n < min: GO(base)


def test_config_change_caps_first_and_open_next() -> None:
    """V9: cap first (if WAITING) and open_next at now + interval."""
    state, _ = CodelValve(interval=1.0).init({}, 0)
    state.update(U, ms(100))  # WAITING(1100)
    assert state.config_change(CodelValve(interval=0.2), ms(200)) == CLOSED
    assert internals(state)["phase"] == ("waiting", ms(400))
    assert internals(state)["open_next"] == 0
    assert state.timeout(ms(400)) == OPEN
    state.ask("a", None, ms(400))  # open_next 600, AWAIT
    state.update(U, ms(450))
    assert state.config_change(CodelValve(interval=0.05), ms(500)) == CLOSED
    assert internals(state)["open_next"] == ms(550)
    assert state.config_change(CodelValve(interval=1.0), ms(520)) == CLOSED
    assert internals(state)["open_next"] == ms(550)  # never pushed later
    assert state.timeout(ms(550)) == OPEN


def test_never_wakes() -> None:
    """V9: the valve never requests a wake."""
    state, verdict = CodelValve().init({}, 0)
    assert verdict.wake_at is None
    assert state.update(U, 0).wake_at is None
    assert state.timeout(ms(999)) == CLOSED
    assert state.timeout(ms(1000)) == OPEN


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"target": float("nan")}, ValueError, "target"),
        ({"target": "0.1"}, TypeError, "target"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": 1e-10}, ValueError, "interval"),
        ({"interval": -1.0}, ValueError, "interval"),
        ({"interval": None}, TypeError, "interval"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"max_size": 1.0}, TypeError, "max_size"),
        ({"min_size": 2, "max_size": 1}, ValueError, "max_size"),  # V2
    ],
)
def test_validation(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        CodelValve(**kwargs)  # type: ignore[arg-type]


def test_negative_target_allowed() -> None:
    """The spec is silent on CodelValve's target sign: any finite number is accepted."""
    assert CodelValve(target=-0.5).target == -0.5


class CodelMachine(ValveMachine):
    start_class = CodelValve


TestCodelMachine = CodelMachine.TestCase
TestCodelMachine.settings = MACHINE_SETTINGS
