"""What every valve shares (regulation.md V1-V3, R17; api.md rule 4)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sbroker.regulator import (
    CodelValve,
    OpenValve,
    RateValve,
    RelativeValve,
    Valve,
    ValveState,
    Verdict,
)

VALVES: list[Any] = [
    OpenValve(max_size=3),
    RelativeValve(target=0.05, min_size=1, max_size=4),
    CodelValve(target=0.05, interval=0.5, min_size=1, max_size=4),
    RateValve(limit=5, interval=0.5, min_size=1, max_size=4),
]
IDS = [type(valve).__name__ for valve in VALVES]


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_protocols(valve: Any) -> None:
    """V1: configurations are Valves, their states ValveStates, verdicts (status, wake_at)."""
    assert isinstance(valve, Valve)
    state, verdict = valve.init({}, 0)
    assert isinstance(state, ValveState)
    assert isinstance(verdict, Verdict)
    status, wake_at = verdict
    assert (status, wake_at) == (verdict.status, verdict.wake_at)
    assert status in ("open", "closed")
    assert Verdict("open") == ("open", None)


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_configuration_is_an_immutable_value(valve: Any) -> None:
    """api.md rule 4: comparable, printable (repr shows parameters), immutable, reusable."""
    assert valve == attrs.evolve(valve)
    assert repr(valve).startswith(type(valve).__name__ + "(")
    assert "max_size=" in repr(valve)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        valve.max_size = 9
    first, _ = valve.init({"a": 1}, 0)
    second, _ = valve.init({}, 0)
    assert (first.size(), second.size()) == (1, 0)


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_init_copies_running_and_terminate_hands_over(valve: Any) -> None:
    """R17: ``init`` takes a copy of ``{ref: owner}``; ``terminate`` gives every lock back."""
    running = {"a": "owner a", ("b", 2): None, 3: object()}
    state, _ = valve.init(running, 10)
    running.clear()
    assert state.size() == 3
    assert state.done("a", 11)[0] is True
    handed = state.terminate()
    assert list(handed) == [("b", 2), 3]
    assert state.size() == 0


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_unknown_refs_change_nothing(valve: Any) -> None:
    """V4 / R9: unknown refs are NOT_FOUND / False, nothing consumed."""
    state, _ = valve.init({"a": 1}, 0)
    before = state.open_time(), state.size()
    assert state.continue_("zz", 5)[:2] == ("not_found", None)
    assert state.done("zz", 5)[0] is False
    assert state.done("a", 6)[0] is True
    assert state.done("a", 7)[0] is False  # a second done on a ref
    assert state.continue_("a", 8)[:2] == ("not_found", None)
    assert before[1] == 1 and state.size() == 0


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_config_change_needs_the_same_class(valve: Any) -> None:
    """R17: another class is a hand-over (init(terminate())), not a config_change."""
    other = OpenValve() if not isinstance(valve, OpenValve) else RateValve()
    state, _ = valve.init({"a": 1}, 0)
    with pytest.raises(TypeError, match="terminate"):
        state.config_change(other, 1)
    assert state.size() == 1
    sizes = {"max_size": 0} if isinstance(valve, OpenValve) else {"min_size": 0, "max_size": 0}
    smaller = attrs.evolve(valve, **sizes)
    assert state.config_change(smaller, 2) == ("closed", None)
    assert state.continue_("a", 3)[:2] == ("done", None)  # V4: n > max


@pytest.mark.parametrize("valve", VALVES, ids=IDS)
def test_size_limits(valve: Any) -> None:
    """V3: n < min -> open without wake; n >= max -> closed without wake."""
    state, verdict = valve.init({}, 0)
    low = getattr(valve, "min_size", 0)
    if low:
        assert verdict == ("open", None)
    state, verdict = valve.init({i: i for i in range(valve.max_size)}, 0)
    assert verdict == ("closed", None)
    assert state.open_time() is None
    assert state.timeout(10**12) == ("closed", None)
    assert state.update(-(10**12), 10**12) == ("closed", None)
