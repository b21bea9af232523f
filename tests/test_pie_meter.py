"""PieMeter and its protector (regulation.md P1-P13, property 3)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from meter_harness import MS, FakeHost, sample

from sbroker.meters import MeterState, PieMeter, PieProtector, PieSide, Protector
from sbroker.meters.pie import _PieController

P_ONE = 2**27
TOL = 1e-12

# ---------------------------------------------------------------------------
# Worked examples


def test_controller_example() -> None:
    # P5, P6, P7, P8: PieMeter(ask=dict(interval=0.2)), queue_delay 0.
    host = FakeHost()
    state, first = PieMeter(ask={"interval": 0.2}).init(host, 0)
    assert isinstance(state, MeterState)
    assert first == 0  # P5
    table = [
        # t, rt, next, p, L, A, published
        (0, 0, 100, 0.0, 0, 200, 0.0),  # full (first); the gate resets A
        (100, 400, 200, 0.000262451171875, 400, 100, 0.0),  # A > 0
        (200, 400, 300, 0.001434326171875, 400, 0, 0.001434326171875),
        (300, 400, 400, 0.006121826171875, 400, 0, 0.006121826171875),
        (350, 40, 400, 0.006121826171875, 400, 0, 0.006121826171875),  # light
        (400, 0, 500, 0.0, 0, 200, 0.0),  # clamped; the gate resets A
    ]
    for t, rt, expected_next, p, last, allowance, published in table:
        assert state.update(sample(t * MS, relative_time=rt * MS)) == expected_next * MS, t
        assert math.isclose(state.probability("ask"), p, rel_tol=0, abs_tol=TOL), t
        assert state.last_sojourn("ask") == last * MS, t
        assert state.allowance("ask") == allowance * MS, t
        assert math.isclose(state.published("ask"), published, rel_tol=0, abs_tol=TOL), t
        assert state.published("ask_r") == 0.0, t
        assert host.protector is state.protector
        assert host.protector.p_int("ask") == int(state.published("ask") * P_ONE)  # P9
        assert host.protector.p_int("ask_r") == 0


def test_idle_decay_example() -> None:
    # P6: p = 0.3625, L = 0, s = 0 -> delta = -0.0125, p = 0.35, then 0.343.
    controller = _PieController(PieSide(target=0.1, interval=1.0), 0)
    controller.p = 0.3625
    controller.last = 0
    controller.full_step(0, 100 * MS)
    assert math.isclose(controller.p, 0.343, rel_tol=0, abs_tol=TOL)


@pytest.mark.parametrize(
    ("p", "divisor"),
    [
        (0.0, 2048),
        (9.9e-7, 2048),
        (1e-6, 512),
        (1e-5, 128),
        (1e-4, 32),
        (1e-3, 8),
        (1e-2, 2),
        (0.0999, 2),
        (0.1, 1),
        (0.5, 1),
    ],
)
def test_scale_table(p: float, divisor: int) -> None:
    # P6: the step is divided according to the old p.
    controller = _PieController(PieSide(target=0.0, interval=1.0), 0)
    controller.p = p
    controller.last = 800 * MS  # s - L = 0: delta = 0.8 / 8 = 0.1
    controller.full_step(800 * MS, 0)
    assert math.isclose(controller.p, min(1.0, p + 0.1 / divisor), rel_tol=0, abs_tol=TOL)


@pytest.mark.parametrize(
    ("target", "p", "s", "last", "allowance", "published", "allowance_after"),
    [
        # quiet: p == 0 and both sojourns under T // 2 -> refill the allowance
        (100 * MS, 0.0, 50 * MS - 1, 50 * MS - 1, 0, 0.0, 1000 * MS),
        (100 * MS, 0.0, 50 * MS, 0, 0, 0.0, 0),  # s == T // 2 is not quiet
        (100 * MS, 0.0, 0, 50 * MS, 0, 0.0, 0),  # L == T // 2 is not quiet
        (3, 0.0, 0, 0, 0, 0.0, 1000 * MS),  # integer T // 2 == 1
        (3, 0.0, 1, 0, 0, 0.0, 0),
        # allowance left
        (100 * MS, 0.9, 200 * MS, 200 * MS, 1, 0.0, 1),
        # L under half the target and p < 0.2
        (100 * MS, 0.19999, 0, 50 * MS - 1, 0, 0.0, 0),
        (100 * MS, 0.2, 0, 50 * MS - 1, 0, 0.2, 0),
        (100 * MS, 0.19, 0, 50 * MS, 0, 0.19, 0),
        (100 * MS, 0.0, 60 * MS, 60 * MS, 0, 0.0, 0),
    ],
)
def test_gate_branches(
    target: int,
    p: float,
    s: int,
    last: int,
    allowance: int,
    published: float,
    allowance_after: int,
) -> None:
    # P8, with the integer T // 2.
    controller = _PieController(PieSide(target=target / 1e9, interval=1.0), 0)
    assert controller.target == target
    controller.p, controller.last, controller.allowance = p, last, allowance
    assert controller.gate(s) == published
    assert controller.allowance == allowance_after


def test_gate_example() -> None:
    # P9, P11: PieMeter(min_len=1, max_len=2), ask side.
    host = FakeHost()
    state, _ = PieMeter(min_len=1, max_len=2).init(host, 0)
    protector = host.protector
    assert protector is not None
    # A publish with ask_len = 0 and p = 0.0.
    state.update(sample(0))
    assert protector.admit("ask") is True  # c = 1
    assert protector.admit("ask") is True  # c = 2
    assert protector.admit("ask") is False  # c = 3 > max_len
    # A publish with ask_len = 0 and p = 1.0.
    pie = state.protector
    pie.publish(1.0, 0.0, 0, 0)
    assert pie.p_int("ask") == P_ONE
    assert protector.admit("ask") is True  # c = 1 <= min_len
    assert protector.admit("ask") is False  # c = 2, p = 1
    assert protector.admit("ask_r") is True  # its own counter: 1
    assert (pie.counter("ask"), pie.counter("ask_r")) == (2, 1)


def test_gate_with_real_probability() -> None:
    # P11 end to end: drive p to 1 with huge sojourns, no allowance.
    host = FakeHost()
    state, _ = PieMeter(ask={"interval": 1e-9}, min_len=1).init(host, 0)
    now = 0
    while state.published("ask") < 1.0:
        now += 100 * MS
        state.update(sample(now, relative_time=60_000 * MS, ask_len=0))
        assert now < 100_000 * MS
    protector = state.protector
    assert protector.p_int("ask") == P_ONE
    assert [protector.admit("ask") for _ in range(3)] == [True, False, False]
    assert protector.admit("ask_r") is True  # the ask_r side publishes 0


# ---------------------------------------------------------------------------
# Protector mechanics


def test_init_installs_protector_and_close_removes_it() -> None:
    # P5, P13.
    host = FakeHost()
    state, first = PieMeter().init(host, 7)
    assert first == 7
    protector = host.protector
    assert isinstance(protector, PieProtector)
    assert isinstance(protector, Protector)
    assert (protector.p_int("ask"), protector.p_int("ask_r")) == (0, 0)
    assert (protector.counter("ask"), protector.counter("ask_r")) == (0, 0)
    state.close()
    assert host.protector is None
    assert host.protector_calls == [protector, None]


def test_publish_resets_counters_to_waiting_counts() -> None:
    # P9, property 3: after a publish the counters equal the waiting counts.
    host = FakeHost()
    state, _ = PieMeter(max_len=5).init(host, 0)
    protector = state.protector
    state.update(sample(0, ask_len=4, ask_r_len=2))
    assert (protector.counter("ask"), protector.counter("ask_r")) == (4, 2)
    assert protector.admit("ask") is True  # 5
    assert protector.admit("ask") is False  # 6 > 5
    assert protector.admit("ask") is False  # dropped requests still count
    assert protector.counter("ask") == 7
    state.update(sample(MS, ask_len=1, ask_r_len=0))  # a light step publishes too
    assert (protector.counter("ask"), protector.counter("ask_r")) == (1, 0)


@pytest.mark.parametrize(
    ("p", "p_int"),
    [(0.0, 0), (1.0, P_ONE), (0.5, P_ONE // 2), (1e-9, 0), (2.0**-27, 1), (0.3, int(0.3 * P_ONE))],
)
def test_quantisation(p: float, p_int: int) -> None:
    # P9: p_int = clamp(trunc(p * 2**27), 0, 2**27).
    protector = PieProtector(random.Random(0), 0, None)
    protector.publish(p, p, 0, 0)
    assert protector.p_int("ask") == protector.p_int("ask_r") == p_int


def test_max_len_zero_drops_everything() -> None:
    # Property 3.
    protector = PieProtector(random.Random(0), 0, 0)
    assert not any(protector.admit(side) for side in ["ask", "ask_r"] * 5)


def test_random_drop_draws_below_p_int() -> None:
    # P11: drop iff rng.randrange(2**27) < p_int.
    class Draws(random.Random):
        def __init__(self, values: list[int]) -> None:
            super().__init__(0)
            self.values = values
            self.args: list[int] = []

        def randrange(self, *args: Any, **kwargs: Any) -> int:
            self.args.append(args[0])
            return self.values.pop(0)

    rng = Draws([99, 100, 101])
    protector = PieProtector(rng, 0, None)
    protector.publish(100 / P_ONE, 0.0, 0, 0)
    assert protector.p_int("ask") == 100
    assert [protector.admit("ask") for _ in range(3)] == [False, True, True]
    assert rng.args == [P_ONE] * 3
    assert protector.admit("ask_r") is True  # p_int 0: no draw
    assert rng.args == [P_ONE] * 3


def test_admit_rejects_unknown_side() -> None:
    protector = PieProtector(random.Random(0), 0, None)
    with pytest.raises(ValueError, match="side"):
        protector.admit("sideways")


# ---------------------------------------------------------------------------
# config_change (P10)


def test_config_change_before_any_full_step() -> None:
    # P10: L is None -> A = I_new, published 0.0.
    host = FakeHost()
    state, _ = PieMeter().init(host, 0)
    assert state.config_change(PieMeter(ask={"interval": 0.5}, update=0.2), 50 * MS) == 50 * MS
    assert state.allowance("ask") == 500 * MS
    assert state.published("ask") == 0.0


def test_config_change_rescales_allowance_and_regates() -> None:
    # P10: A = 0 stays 0; otherwise A - I_old + I_new, floored at 0; p kept.
    host = FakeHost()
    state, _ = PieMeter(ask={"interval": 0.3}).init(host, 0)
    state.update(sample(0, relative_time=400 * MS))  # full: L = 400
    state.update(sample(100 * MS, relative_time=400 * MS))  # A = 200
    assert state.allowance("ask") == 200 * MS
    p = state.probability("ask")
    assert p > 0
    state.config_change(PieMeter(ask={"interval": 0.5}), 120 * MS)
    assert state.allowance("ask") == 400 * MS
    state.config_change(PieMeter(ask={"interval": 0.05}), 120 * MS)
    assert state.allowance("ask") == 0  # max(0, 400 - 500 + 50)
    assert state.probability("ask") == p
    assert state.published("ask") == p  # gate(L=400) with A = 0 publishes p
    assert state.protector.p_int("ask") == int(p * P_ONE)
    state.config_change(PieMeter(ask={"interval": 10.0}), 120 * MS)
    assert state.allowance("ask") == 0  # A == 0 stays 0
    # A new target above 2 L with p < 0.2 hides p again (P8).
    state.config_change(PieMeter(ask={"target": 0.9, "interval": 10.0}), 120 * MS)
    assert state.published("ask") == 0.0
    assert state.probability("ask") == p


def test_config_change_timing_and_protector_parameters() -> None:
    # P10: next_full = min(now + U_new, max(now, next_full)); new min/max; waiting counts.
    host = FakeHost()
    state, _ = PieMeter(update=1.0).init(host, 0)
    assert state.update(sample(0, ask_len=3, ask_r_len=1)) == 1000 * MS
    state.protector.admit("ask")
    assert state.config_change(PieMeter(update=0.1, min_len=2, max_len=4), 50 * MS) == 150 * MS
    assert state.config_change(PieMeter(update=5.0), 60 * MS) == 150 * MS
    assert state.config_change(PieMeter(update=5.0), 200 * MS) == 200 * MS
    state.config_change(PieMeter(min_len=2, max_len=4), 200 * MS)
    protector = state.protector
    assert (protector.min_len, protector.max_len) == (2, 4)
    assert (protector.counter("ask"), protector.counter("ask_r")) == (3, 1)
    assert host.protector_calls == [protector]  # the same protector, updated in place


# ---------------------------------------------------------------------------
# Configuration values


def test_defaults_eq_repr() -> None:
    meter = PieMeter()
    assert meter.ask == {"target": 0.1, "interval": 1.0}
    assert meter.ask_r == {"target": 0.1, "interval": 1.0}
    assert (meter.update, meter.min_len, meter.max_len) == (0.1, 0, None)
    assert meter == PieMeter(ask={}, ask_r={"target": 0.1}, rng=random.Random(5))
    assert hash(meter) == hash(PieMeter(ask={"interval": 1.0}))
    assert meter != PieMeter(ask={"target": 0.2})
    assert repr(meter) == (
        "PieMeter(ask={'target': 0.1, 'interval': 1.0}, "
        "ask_r={'target': 0.1, 'interval': 1.0}, update=0.1, min_len=0, max_len=None)"
    )
    assert isinstance(meter.rng, random.Random)
    assert dict(meter.ask) == {"target": 0.1, "interval": 1.0}
    assert meter.ask["target"] == 0.1
    rng = random.Random(1)
    assert PieMeter(rng=rng).rng is rng


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"ask": {"tgt": 0.1}}, ValueError, "ask"),
        ({"ask_r": {"target": 0.1, "burst": 1}}, ValueError, "ask_r"),
        ({"ask": [("target", 0.1)]}, TypeError, "ask"),
        ({"ask_r": None}, TypeError, "ask_r"),
        ({"ask": {"target": -0.1}}, ValueError, r"ask\['target'\]"),
        ({"ask": {"target": math.nan}}, ValueError, "ask"),
        ({"ask": {"target": "0.1"}}, TypeError, "ask"),
        ({"ask_r": {"interval": 0}}, ValueError, r"ask_r\['interval'\]"),
        ({"ask_r": {"interval": -1}}, ValueError, "ask_r"),
        ({"ask_r": {"interval": True}}, TypeError, "ask_r"),
        ({"update": 0}, ValueError, "update"),
        ({"update": -0.1}, ValueError, "update"),
        ({"update": None}, TypeError, "update"),
        ({"update": math.inf}, ValueError, "update"),
        ({"min_len": -1}, ValueError, "min_len"),
        ({"min_len": 1.5}, TypeError, "min_len"),
        ({"min_len": True}, TypeError, "min_len"),
        ({"min_len": None}, TypeError, "min_len"),
        ({"max_len": -1}, ValueError, "max_len"),
        ({"max_len": 2.0}, TypeError, "max_len"),
        ({"min_len": 3, "max_len": 2}, ValueError, "max_len"),
        ({"rng": 3}, TypeError, "rng"),
        ({"rng": random}, TypeError, "rng"),
    ],
)
def test_bad_parameters(kwargs: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        PieMeter(**kwargs)


def test_pie_side_values() -> None:
    # P1: a PieSide is accepted as a side and validated like a dict.
    side = PieSide(target=0.2)
    assert PieMeter(ask=side).ask == {"target": 0.2, "interval": 1.0}
    assert PieMeter(ask=side) == PieMeter(ask={"target": 0.2})
    with pytest.raises(ValueError, match="target"):
        PieSide(target=-1)
    with pytest.raises(ValueError, match="interval"):
        PieSide(interval=0)
    assert len(side) == 2 and list(side) == ["target", "interval"]
    with pytest.raises(KeyError):
        side["burst"]


def test_rng_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        PieMeter({}, {}, 0.1, 0, None, random.Random())  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Property 3: a reference model of P4-P11


def model_gate(side: dict[str, Any], s: int) -> float:
    """P8, written from the spec."""
    half = side["T"] // 2
    if side["p"] == 0.0 and s < half and side["L"] < half:
        side["A"] = side["I"]
        return 0.0
    if side["A"] > 0:
        return 0.0
    if side["L"] < half and side["p"] < 0.2:
        return 0.0
    return float(side["p"])


def model_scale(delta: float, p: float) -> float:
    """P6's table."""
    if p < 1e-6:
        return delta / 2048
    if p < 1e-5:
        return delta / 512
    if p < 1e-4:
        return delta / 128
    if p < 1e-3:
        return delta / 32
    if p < 1e-2:
        return delta / 8
    if p < 0.1:
        return delta / 2
    return delta


class PieModel:
    """The meter and protector of P3-P11 as plain dictionaries."""

    def __init__(self, params: dict[str, Any], rng: random.Random, now: int) -> None:
        self.sides = {
            name: {
                "T": params[name][0],
                "I": params[name][1],
                "p": 0.0,
                "L": None,
                "upd": now,
                "A": params[name][1],
                "pub": 0.0,
            }
            for name in ("ask", "ask_r")
        }
        self.U = params["update"]
        self.next_full = now
        self.min_len, self.max_len = params["min_len"], params["max_len"]
        self.rng = rng
        self.p_int = {"ask": 0, "ask_r": 0}
        self.counter = {"ask": 0, "ask_r": 0}
        self.lens = {"ask": 0, "ask_r": 0}

    def publish(self) -> None:
        for name, side in self.sides.items():
            self.p_int[name] = max(0, min(P_ONE, math.trunc(side["pub"] * P_ONE)))
            self.counter[name] = self.lens[name]

    def update(self, now: int, qd: int, rt: int, ask_len: int, ask_r_len: int) -> int:
        s = {"ask": qd + max(0, rt), "ask_r": qd + max(0, -rt)}  # P4
        full = now >= self.next_full
        for name, side in self.sides.items():
            if not full:
                side["pub"] = model_gate(side, s[name])  # P7
                continue
            if side["L"] is None:
                side["L"] = s[name]
                side["upd"] = now
            delta = (s[name] - side["T"]) / 8_000_000_000 + (s[name] - side["L"]) / 800_000_000
            side["p"] = min(1.0, max(0.0, side["p"] + model_scale(delta, side["p"])))
            if s[name] == 0 and side["L"] == 0:
                side["p"] = side["p"] * 0.98
            side["A"] = max(0, side["A"] - (now - side["upd"]))
            side["L"] = s[name]
            side["upd"] = now
            side["pub"] = model_gate(side, s[name])
        if full:
            self.next_full = now + self.U
        self.lens = {"ask": ask_len, "ask_r": ask_r_len}
        self.publish()
        return self.next_full

    def config_change(self, params: dict[str, Any], rng: random.Random, now: int) -> int:
        for name, side in self.sides.items():
            old_i = side["I"]
            side["T"], side["I"] = params[name]
            if side["L"] is None:
                side["A"] = side["I"]
                side["pub"] = 0.0
            else:
                side["A"] = 0 if side["A"] == 0 else max(0, side["A"] - old_i + side["I"])
                side["pub"] = model_gate(side, side["L"])
        self.U = params["update"]
        self.next_full = min(now + self.U, max(now, self.next_full))
        self.min_len, self.max_len = params["min_len"], params["max_len"]
        self.rng = rng
        self.publish()  # with the last sample's waiting counts
        return self.next_full

    def admit(self, name: str) -> bool:
        self.counter[name] += 1
        c = self.counter[name]
        if self.max_len is not None and c > self.max_len:
            return False
        if c > self.min_len:
            if self.p_int[name] == P_ONE:
                return False
            if self.p_int[name] > 0 and self.rng.randrange(P_ONE) < self.p_int[name]:
                return False
        return True


TARGETS = [0.0, 3e-9, 0.05, 0.1, 0.4, 2.0]
INTERVALS = [1e-9, 0.05, 0.2, 1.0]
UPDATES = [0.05, 0.1, 0.25]


@st.composite
def pie_params(draw: st.DrawFn) -> dict[str, Any]:
    min_len = draw(st.integers(0, 3))
    max_len = draw(st.none() | st.integers(min_len, min_len + 3))
    return {
        "ask": (draw(st.sampled_from(TARGETS)), draw(st.sampled_from(INTERVALS))),
        "ask_r": (draw(st.sampled_from(TARGETS)), draw(st.sampled_from(INTERVALS))),
        "update": draw(st.sampled_from(UPDATES)),
        "min_len": min_len,
        "max_len": max_len,
    }


def ns_params(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for key in ("ask", "ask_r"):
        out[key] = (round(params[key][0] * 1e9), round(params[key][1] * 1e9))
    out["update"] = round(params["update"] * 1e9)
    return out


def make_meter(params: dict[str, Any], seed: int) -> PieMeter:
    return PieMeter(
        ask={"target": params["ask"][0], "interval": params["ask"][1]},
        ask_r={"target": params["ask_r"][0], "interval": params["ask_r"][1]},
        update=params["update"],
        min_len=params["min_len"],
        max_len=params["max_len"],
        rng=random.Random(seed),
    )


RTS = st.sampled_from(
    [
        0,
        1,
        -1,
        25 * MS,
        -25 * MS,
        50 * MS,
        -50 * MS,
        400 * MS,
        -400 * MS,
        5_000 * MS,
        -5_000 * MS,
        60_000 * MS,
        -60_000 * MS,
    ]
) | st.integers(-2_000, 2_000).map(lambda ms: ms * MS)


class PieMachine(RuleBasedStateMachine):
    """Drive a PieMeter and PieModel side by side (times in ns)."""

    @initialize(params=pie_params(), seed=st.integers(0, 2**32), start=st.integers(0, 10**9))
    def start(self, params: dict[str, Any], seed: int, start: int) -> None:
        self.host = FakeHost()
        self.now = start
        meter = make_meter(params, seed)
        self.rng = meter.rng
        self.state, first = meter.init(self.host, start)
        self.model = PieModel(ns_params(params), random.Random(seed), start)
        assert first == start
        self.next = first

    def _sample(self, qd: int, rt: int, ask_len: int, ask_r_len: int) -> None:
        before = {side: self.state.probability(side) for side in ("ask", "ask_r")}
        light = self.now < self.model.next_full
        result = self.state.update(
            sample(self.now, queue_delay=qd, relative_time=rt, ask_len=ask_len, ask_r_len=ask_r_len)
        )
        expected = self.model.update(self.now, qd, rt, ask_len, ask_r_len)
        assert result == expected
        assert result > self.now  # property 1 (strictly: U > 0)
        if light:  # property 3: p changes only in full steps
            assert before == {side: self.state.probability(side) for side in before}
        # Property 3: right after a publish the counters equal the waiting counts.
        protector = self.state.protector
        assert (protector.counter("ask"), protector.counter("ask_r")) == (ask_len, ask_r_len)
        self.next = result

    @rule(
        dt=st.sampled_from([0, 1, 10 * MS, 49 * MS, 50 * MS, 100 * MS, 150 * MS, 400 * MS]),
        qd=st.sampled_from([0, 0, 1, 5 * MS, 50 * MS, 200 * MS]),
        rt=RTS,
        ask_len=st.integers(0, 4),
        ask_r_len=st.integers(0, 4),
    )
    def sample(self, dt: int, qd: int, rt: int, ask_len: int, ask_r_len: int) -> None:
        self.now += dt
        self._sample(qd, rt, ask_len, ask_r_len)

    @rule(rt=RTS, ask_len=st.integers(0, 4))
    def sample_at_next(self, rt: int, ask_len: int) -> None:
        self.now = max(self.now, self.next)
        self._sample(0, rt, ask_len, 0)

    @rule(
        n=st.integers(1, 8),
        rt=RTS,
        qd=st.sampled_from([0, 0, 200 * MS, 2_000 * MS]),
        ask_len=st.integers(0, 4),
    )
    def full_steps(self, n: int, rt: int, qd: int, ask_len: int) -> None:
        # A run of full steps with a steady sojourn: builds p up (or lets it decay).
        for _ in range(n):
            self.now = max(self.now, self.next)
            self._sample(qd, rt, ask_len, ask_len)

    @rule(n=st.integers(1, 4))
    def fade(self, n: int) -> None:
        # A full step with tiny sojourns, then idle ones: shows the idle decay (P6).
        self.now = max(self.now, self.next)
        self._sample(1, 0, 0, 0)
        for _ in range(n):
            self.now = max(self.now, self.next)
            self._sample(0, 0, 0, 0)

    @rule(side=st.sampled_from(["ask", "ask_r"]), n=st.integers(1, 6))
    def admit(self, side: str, n: int) -> None:
        protector = self.state.protector
        for _ in range(n):
            p_int = protector.p_int(side)
            counted = protector.counter(side) + 1
            got = protector.admit(side)
            assert got == self.model.admit(side)
            if p_int == 0:  # property 3: only max_len drops
                max_len = protector.max_len
                assert got == (max_len is None or counted <= max_len)

    @rule(params=pie_params(), seed=st.integers(0, 2**32), dt=st.integers(0, 300 * MS))
    def config_change(self, params: dict[str, Any], seed: int, dt: int) -> None:
        self.now += dt
        meter = make_meter(params, seed)
        self.rng = meter.rng
        result = self.state.config_change(meter, self.now)
        assert result == self.model.config_change(ns_params(params), random.Random(seed), self.now)
        assert result >= self.now
        self.next = result

    @rule(params=pie_params(), seed=st.integers(0, 2**32))
    def close_and_reinit(self, params: dict[str, Any], seed: int) -> None:
        # P13, then a fresh meter on the same host.
        self.state.close()
        assert self.host.protector is None
        self.start(params, seed, self.now)

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "state"):
            return
        protector = self.state.protector
        assert self.host.protector is protector
        for name, side in self.model.sides.items():
            assert self.state.probability(name) == side["p"]
            assert self.state.published(name) == side["pub"]
            assert self.state.allowance(name) == side["A"]
            assert self.state.last_sojourn(name) == side["L"]
            assert protector.p_int(name) == self.model.p_int[name]
            assert protector.counter(name) == self.model.counter[name]
            published = self.state.published(name)
            assert 0.0 <= published <= 1.0  # property 3
            assert 0.0 <= self.state.probability(name) <= 1.0
            if self.state.allowance(name) > 0:
                assert published == 0.0
        # The same random draws, in the same order (P11).
        assert self.rng.getstate() == self.model.rng.getstate()

    @precondition(lambda self: hasattr(self, "state"))
    @rule()
    def max_len_zero(self) -> None:
        # Property 3: max_len = 0 drops every gated request.
        self.now += 1
        params = {"ask": (0.1, 1.0), "ask_r": (0.1, 1.0), "update": 0.1, "min_len": 0, "max_len": 0}
        self.config_change(params, 0, 0)
        assert not self.state.protector.admit("ask")
        assert not self.state.protector.admit("ask_r")
        assert not self.model.admit("ask")
        assert not self.model.admit("ask_r")


PieMachine.TestCase.settings = settings(max_examples=150, deadline=None, stateful_step_count=50)
TestPieMachine = PieMachine.TestCase
