"""UpdateMeter (regulation.md M14-M18, property 5)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from meter_harness import MS, FakeHost, sample

from sbroker import BrokerClosed, open_broker
from sbroker.meters import MeterState, UpdateMeter
from sbroker.regulator import open_regulator


class FakeRegulator:
    """Anything with a synchronous ``update(value)``; records what it got."""

    def __init__(self, name: str, log: list[tuple[str, int]] | None = None) -> None:
        self.name = name
        self.log = [] if log is None else log

    def update(self, value: int) -> None:
        self.log.append((self.name, value))

    def __repr__(self) -> str:
        return f"<FakeRegulator {self.name}>"


class Draws(random.Random):
    """An rng whose ``randint(1, U)`` returns scripted draws (in ms)."""

    def __init__(self, draws_ms: list[int]) -> None:
        super().__init__(0)
        self.draws = draws_ms
        self.bounds: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.bounds.append((a, b))
        return self.draws.pop(0) * MS


# ---------------------------------------------------------------------------
# Worked example


def test_update_example() -> None:
    # M15, M16, M17, M18: (R1, "ask", 0.1), (R2, "ask_r", 0.2) created at t=0.
    log: list[tuple[str, int]] = []
    r1, r2 = FakeRegulator("R1", log), FakeRegulator("R2", log)
    rng = Draws([50, 20, 100, 200, 30, 1])
    state, first = UpdateMeter([(r1, "ask", 0.1), (r2, "ask_r", 0.2)], rng=rng).init(FakeHost(), 0)
    assert isinstance(state, MeterState)
    assert first == 0  # M16
    table = [
        # t, rt, sent, next
        (0, 30, [("R1", 30), ("R2", -30)], 100),
        (60, -10, [], 100),
        (100, -10, [("R1", -10)], 120),
        (130, 5, [("R2", -5)], 250),
    ]
    for t, rt, sent, expected_next in table:
        log.clear()
        assert state.update(sample(t * MS, relative_time=rt * MS)) == expected_next * MS, t
        assert log == [(name, value * MS) for name, value in sent], t
    assert state.due() == [250 * MS, 430 * MS]
    # t=200: change to [(R1, "ask", 0.1)]: R1 draws 30 -> max(100 + 80, 200).
    assert state.config_change(UpdateMeter([(r1, "ask", 0.1)], rng=rng), 200 * MS) == 200 * MS
    assert rng.bounds == [(1, 100 * MS), (1, 200 * MS), (1, 100 * MS), (1, 200 * MS), (1, 100 * MS)]
    log.clear()
    state.update(sample(200 * MS, relative_time=7))
    assert log == [("R1", 7)]


def test_due_ties_in_list_order_and_ascending_due() -> None:
    # M17: ascending due, ties in list order.
    log: list[tuple[str, int]] = []
    a, b, c = (FakeRegulator(n, log) for n in "abc")
    rng = Draws([10, 1, 5, 1, 1, 1])
    state, _ = UpdateMeter([(a, "ask", 0.01), (b, "ask", 0.01), (c, "ask", 0.01)], rng=rng).init(
        FakeHost(), 0
    )
    state.update(sample(0))
    assert log == [("a", 0), ("b", 0), ("c", 0)]
    assert state.due() == [15 * MS, 6 * MS, 10 * MS]
    log.clear()
    state.update(sample(20 * MS))
    assert log == [("b", 0), ("c", 0), ("a", 0)]


def test_default_update_and_sign() -> None:
    # M14: update defaults to 0.1; M17: ask_r gets -relative_time.
    r = FakeRegulator("r")
    meter = UpdateMeter([(r, "ask_r")], rng=random.Random(3))
    assert meter.targets == ((r, "ask_r", 0.1),)
    state, _ = meter.init(FakeHost(), 0)
    nxt = state.update(sample(0, relative_time=-25 * MS))
    assert r.log == [("r", 25 * MS)]
    assert 50 * MS + 1 <= nxt <= 150 * MS  # M15


def test_same_regulator_both_sides() -> None:
    # M14: the pair, not the regulator, must be unique.
    r = FakeRegulator("r")
    state, _ = UpdateMeter([(r, "ask"), (r, "ask_r")]).init(FakeHost(), 0)
    state.update(sample(0, relative_time=4))
    assert r.log == [("r", 4), ("r", -4)]


def test_closed_regulator_is_ignored() -> None:
    # M17: BrokerClosed from a closed regulator is swallowed; the target stays scheduled.
    class Closed:
        calls = 0

        def update(self, value: int) -> None:
            self.calls += 1
            raise BrokerClosed("closed")

    closed, r = Closed(), FakeRegulator("r")
    state, _ = UpdateMeter([(closed, "ask", 0.01), (r, "ask", 0.01)]).init(FakeHost(), 0)
    nxt = state.update(sample(0, relative_time=1))
    assert r.log == [("r", 1)]
    assert nxt > 0
    state.update(sample(20 * MS))
    assert closed.calls == 2


def test_a_closed_regulator_does_not_fail_the_broker() -> None:
    # M17 end to end: a broker feeding a real, closed Regulator keeps running.
    async def main() -> None:
        async with open_regulator() as regulator:
            pass
        meter = UpdateMeter([(regulator, "ask_r", 0.01)])
        async with open_broker(meters=[meter]) as broker:
            broker.async_ask()
            await trio.sleep(0.1)
            assert broker.len() == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_other_errors_propagate() -> None:
    # M7: a meter exception fails the host.
    class Broken:
        def update(self, value: int) -> None:
            raise RuntimeError("broken")

    state, _ = UpdateMeter([(Broken(), "ask")]).init(FakeHost(), 0)
    with pytest.raises(RuntimeError, match="broken"):
        state.update(sample(0))


def test_config_change_new_and_unsent_targets_are_due_now() -> None:
    # M18: a new pair, or one never sent to, is due now; a sent one keeps last_sent.
    r1, r2, r3 = FakeRegulator("1"), FakeRegulator("2"), FakeRegulator("3")
    rng = Draws([10, 40, 40])
    state, _ = UpdateMeter([(r1, "ask", 0.1)], rng=rng).init(FakeHost(), 0)
    state.update(sample(0))  # r1 due 60
    new = UpdateMeter([(r2, "ask", 0.1), (r1, "ask", 0.2), (r1, "ask_r", 0.1)], rng=rng)
    assert state.config_change(new, 5 * MS) == 5 * MS
    assert state.due() == [5 * MS, 140 * MS, 5 * MS]  # r1 ask: 0 + 100 + 40
    # A pair whose side changed is a new pair.
    assert state.config_change(UpdateMeter([(r1, "ask_r", 0.1)], rng=rng), 6 * MS) == 6 * MS
    # An equal but distinct regulator object is a different pair.
    state2, _ = UpdateMeter([(r3, "ask", 0.1)], rng=rng).init(FakeHost(), 0)
    state2.update(sample(0))
    assert state2.config_change(UpdateMeter([(FakeRegulator("3"), "ask")]), 1) == 1


def test_close_is_harmless() -> None:
    host = FakeHost()
    state, _ = UpdateMeter([(FakeRegulator("r"), "ask")]).init(host, 0)
    state.close()
    assert host.alarm_calls == [] and host.protector_calls == []


# ---------------------------------------------------------------------------
# Configuration values


def test_eq_repr() -> None:
    r = FakeRegulator("r")
    meter = UpdateMeter([(r, "ask", 0.1)])
    assert meter == UpdateMeter([(r, "ask")], rng=random.Random(1))
    assert meter == UpdateMeter(((r, "ask", 0.1),))
    assert hash(meter) == hash(UpdateMeter([(r, "ask")]))
    assert meter != UpdateMeter([(r, "ask_r")])
    assert repr(meter) == "UpdateMeter(targets=((<FakeRegulator r>, 'ask', 0.1),))"
    rng = random.Random(2)
    assert UpdateMeter([(r, "ask")], rng=rng).rng is rng


def _bad(*entries: Any) -> list[Any]:
    return list(entries)


R = FakeRegulator("r")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([],), {}, ValueError, "targets"),
        ((None,), {}, TypeError, "targets"),
        (("ask",), {}, TypeError, "targets"),
        ((5,), {}, TypeError, "targets"),
        (([R],), {}, TypeError, "targets"),
        (([(R,)],), {}, TypeError, "targets"),
        (([(R, "ask", 0.1, 1)],), {}, TypeError, "targets"),
        (([[R, "ask"]],), {}, TypeError, "targets"),
        (([(object(), "ask")],), {}, TypeError, "targets"),
        (([(R, "both")],), {}, ValueError, "targets"),
        (([(R, None)],), {}, ValueError, "targets"),
        (([(R, "ask", 0)],), {}, ValueError, "targets"),
        (([(R, "ask", -0.1)],), {}, ValueError, "targets"),
        (([(R, "ask", 1e-12)],), {}, ValueError, "targets"),
        (([(R, "ask", math.nan)],), {}, ValueError, "targets"),
        (([(R, "ask", None)],), {}, TypeError, "targets"),
        (([(R, "ask", True)],), {}, TypeError, "targets"),
        (([(R, "ask", "0.1")],), {}, TypeError, "targets"),
        (([(R, "ask"), (R, "ask", 0.2)],), {}, ValueError, "targets"),
        (([(R, "ask")],), {"rng": 1}, TypeError, "rng"),
        (([(R, "ask")],), {"rng": random}, TypeError, "rng"),
        (([(R, "ask")], random.Random()), {}, TypeError, "positional"),  # rng keyword-only
    ],
)
def test_bad_parameters(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        UpdateMeter(*args, **kwargs)


def test_missing_targets() -> None:
    with pytest.raises(TypeError):
        UpdateMeter()  # type: ignore[call-arg]


# ---------------------------------------------------------------------------
# Property 5: a model of M15-M18

SIDES = ("ask", "ask_r")
PERIODS_MS = (1, 2, 3, 5)


@st.composite
def target_lists(draw: st.DrawFn) -> list[tuple[int, str, int]]:
    """Non-empty unique (regulator index, side, period ms) lists."""
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from(SIDES)),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    return [(i, side, draw(st.sampled_from(PERIODS_MS))) for i, side in pairs]


class UpdateMachine(RuleBasedStateMachine):
    """Drive an UpdateMeter and a model side by side (times in ns)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, int]] = []
        self.regulators = [FakeRegulator(str(i), self.log) for i in range(3)]

    def _meter(self, spec: list[tuple[int, str, int]], seed: int) -> UpdateMeter:
        return UpdateMeter(
            [(self.regulators[i], side, ms / 1000) for i, side, ms in spec],
            rng=random.Random(seed),
        )

    @initialize(spec=target_lists(), seed=st.integers(0, 2**32), start=st.integers(0, 10**9))
    def start(self, spec: list[tuple[int, str, int]], seed: int, start: int) -> None:
        self.now = start
        self.state, first = self._meter(spec, seed).init(FakeHost(), start)
        assert first == start
        self.next = first
        # The model: [index, side, U ns, due, last_sent], and its own rng.
        self.rng = random.Random(seed)
        self.entries: list[list[Any]] = [[i, s, ms * MS, start, None] for i, s, ms in spec]

    def _period(self, u: int) -> int:
        return u // 2 + self.rng.randint(1, u)

    def _sample(self, rt: int) -> None:
        self.log.clear()
        due_now = min(e[3] for e in self.entries)
        expected: list[tuple[str, int]] = []
        if self.now >= due_now:
            order = sorted(
                (e for e in self.entries if e[3] <= self.now),
                key=lambda e: e[3],
            )
            for e in order:
                expected.append((str(e[0]), rt if e[1] == "ask" else -rt))
                e[4] = self.now
                e[3] = self.now + self._period(e[2])
                # Property 5: the next send is spaced within [U//2 + 1, U//2 + U].
                assert e[2] // 2 + 1 <= e[3] - self.now <= e[2] // 2 + e[2]
        result = self.state.update(sample(self.now, relative_time=rt))
        assert self.log == expected
        if self.now < due_now:
            assert self.log == []  # property 5: nothing sent before min(due)
        assert result == min(e[3] for e in self.entries)
        assert result >= self.now  # property 1
        self.next = result

    @rule(dt=st.sampled_from([0, 1, MS // 2, MS, 2 * MS, 4 * MS]), rt=st.integers(-10, 10))
    def sample(self, dt: int, rt: int) -> None:
        self.now += dt
        self._sample(rt * MS // 3)

    @rule(rt=st.integers(-10, 10))
    def sample_at_next(self, rt: int) -> None:
        self.now = max(self.now, self.next)
        self._sample(rt)

    @rule(spec=target_lists(), seed=st.integers(0, 2**32), dt=st.integers(0, 3 * MS))
    def config_change(self, spec: list[tuple[int, str, int]], seed: int, dt: int) -> None:
        # M18
        self.now += dt
        result = self.state.config_change(self._meter(spec, seed), self.now)
        self.rng = random.Random(seed)
        old = {(e[0], e[1]): e for e in self.entries}
        entries = []
        for i, side, ms in spec:
            prev = old.get((i, side))
            u = ms * MS
            if prev is not None and prev[4] is not None:
                entries.append([i, side, u, max(prev[4] + self._period(u), self.now), prev[4]])
            else:
                entries.append([i, side, u, self.now, None])
        self.entries = entries
        assert result == min(e[3] for e in entries)
        assert result >= self.now
        self.next = result

    @invariant()
    def due_matches(self) -> None:
        if hasattr(self, "state"):
            assert self.state.due() == [e[3] for e in self.entries]


UpdateMachine.TestCase.settings = settings(max_examples=150, deadline=None, stateful_step_count=40)
TestUpdateMachine = UpdateMachine.TestCase
