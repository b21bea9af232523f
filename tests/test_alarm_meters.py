"""OverloadMeter and UnderloadMeter (regulation.md M8-M13, property 2)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from meter_harness import MS, FakeHost, Recorder, sample

from sbroker.meters import MeterState, OverloadMeter, UnderloadMeter

# ---------------------------------------------------------------------------
# Worked examples


def test_overload_example() -> None:
    # M9, M11: the overload table with defaults.
    host = FakeHost()
    calls = Recorder()
    state, first = OverloadMeter(on_alarm=calls).init(host, 0)
    assert first is None
    assert isinstance(state, MeterState)
    table = [
        # t, qd, alarm after, next
        (100, 150, False, 1100),
        (600, 200, False, 1100),
        (1100, 120, True, None),
        (1200, 50, True, 2200),
        (1500, 300, True, None),
        (1600, 0, True, 2600),
        (2600, 10, False, None),
    ]
    for t, qd, alarm, expected_next in table:
        result = state.update(sample(t * MS, queue_delay=qd * MS))
        assert result == (None if expected_next is None else expected_next * MS), t
        assert (host.alarms == {"message_queue_slow"}) is alarm, t
    assert host.alarm_calls == [("message_queue_slow", True), ("message_queue_slow", False)]
    assert calls.calls == [(host, True, "message_queue_slow"), (host, False, "message_queue_slow")]


def test_underload_example() -> None:
    # M9, M13: the underload example with defaults.
    host = FakeHost()
    state, first = UnderloadMeter().init(host, 0)
    assert first is None
    table = [
        (0, -50, False, None),
        (100, -150, False, 1100),
        (1100, -2000, True, None),
        (1200, 30, True, 2200),
        (2200, -99, False, None),  # 99 < 100 is fast
    ]
    for t, rt, alarm, expected_next in table:
        result = state.update(sample(t * MS, relative_time=rt * MS))
        assert result == (None if expected_next is None else expected_next * MS), t
        assert (host.alarms == {"valve_slow"}) is alarm, t
    assert host.alarm_calls == [("valve_slow", True), ("valve_slow", False)]


# ---------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize(
    ("qd", "ask_len", "ask_r_len", "slow"),
    [(0, 0, 0, False), (0, 1, 0, True), (0, 0, 1, True), (1, 0, 0, True)],
)
def test_overload_zero_target(qd: int, ask_len: int, ask_r_len: int, slow: bool) -> None:
    # M11, M12: with target 0 a lag-free sample is slow while requests wait.
    host = FakeHost()
    state, _ = OverloadMeter(target=0, interval=0.001).init(host, 0)
    first = state.update(sample(0, queue_delay=qd, ask_len=ask_len, ask_r_len=ask_r_len))
    assert first == (MS if slow else None)
    state.update(sample(MS, queue_delay=qd, ask_len=ask_len, ask_r_len=ask_r_len))
    assert bool(host.alarms) is slow


def test_overload_boundary_is_slow() -> None:
    # M11: queue_delay == target is slow.
    state, _ = OverloadMeter(target=0.1).init(FakeHost(), 0)
    assert state.update(sample(0, queue_delay=100 * MS)) == 1000 * MS
    state2, _ = OverloadMeter(target=0.1).init(FakeHost(), 0)
    assert state2.update(sample(0, queue_delay=100 * MS - 1)) is None


def test_underload_negative_target() -> None:
    # M13: a negative target makes short waits of asks slow too.
    host = FakeHost()
    state, _ = UnderloadMeter(target=-0.05, interval=0.01).init(host, 0)
    assert state.update(sample(0, relative_time=40 * MS)) == 10 * MS
    state.update(sample(10 * MS, relative_time=50 * MS))
    assert host.alarms == {"valve_slow"}  # -50 >= -50
    assert state.update(sample(20 * MS, relative_time=51 * MS)) == 30 * MS


# ---------------------------------------------------------------------------
# config_change, close, signalling


def test_config_change_shifts_pending_toggle() -> None:
    # M10: toggle_at moves by the interval change; the alarm is kept.
    host = FakeHost()
    state, _ = OverloadMeter().init(host, 0)
    assert state.update(sample(0, queue_delay=200 * MS)) == 1000 * MS
    assert state.config_change(OverloadMeter(interval=2.0), 500 * MS) == 2000 * MS
    assert state.update(sample(1500 * MS, queue_delay=200 * MS)) == 2000 * MS
    assert not host.alarms
    # A shorter interval can move toggle_at into the past: next is now.
    assert state.config_change(OverloadMeter(interval=0.5), 1600 * MS) == 1600 * MS
    assert state.update(sample(1600 * MS, queue_delay=200 * MS)) is None
    assert host.alarms == {"message_queue_slow"}


def test_config_change_without_pending_toggle() -> None:
    # M10: nothing pending -> None; active stays, the new target applies.
    host = FakeHost()
    state, _ = OverloadMeter(interval=0.001).init(host, 0)
    state.update(sample(0, queue_delay=200 * MS))
    state.update(sample(MS, queue_delay=200 * MS))
    assert host.alarms == {"message_queue_slow"}
    assert state.config_change(OverloadMeter(target=0.3, interval=0.001), 2 * MS) is None
    assert host.alarms == {"message_queue_slow"}
    assert host.alarm_calls == [("message_queue_slow", True)]
    # 200 ms is now fast: a clearing run starts.
    assert state.update(sample(3 * MS, queue_delay=200 * MS)) == 4 * MS


def test_config_change_adopts_new_callback() -> None:
    # M10: the new meter's on_alarm is used from then on.
    host = FakeHost()
    old, new = Recorder(), Recorder()
    state, _ = OverloadMeter(interval=0.001, on_alarm=old).init(host, 0)
    state.update(sample(0, queue_delay=200 * MS))
    state.config_change(OverloadMeter(interval=0.001, on_alarm=new), 0)
    state.update(sample(MS, queue_delay=200 * MS))
    assert old.calls == []
    assert new.calls == [(host, True, "message_queue_slow")]


def test_close_clears_active_alarm(caplog: pytest.LogCaptureFixture) -> None:
    # M8: close() clears an active alarm, logging INFO and calling back.
    host = FakeHost()
    calls = Recorder()
    state, _ = UnderloadMeter(interval=0.001, on_alarm=calls).init(host, 0)
    state.update(sample(0, relative_time=-200 * MS))
    state.update(sample(MS, relative_time=-200 * MS))
    assert host.alarms == {"valve_slow"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sbroker"):
        state.close()
    assert host.alarms == set()
    assert calls.calls[-1] == (host, False, "valve_slow")
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_close_inactive_does_nothing() -> None:
    # M8: nothing to clear.
    host = FakeHost()
    calls = Recorder()
    state, _ = OverloadMeter(on_alarm=calls).init(host, 0)
    state.update(sample(0, queue_delay=200 * MS))  # pending, not set
    state.close()
    assert host.alarm_calls == []
    assert calls.calls == []


def test_alarm_logging(caplog: pytest.LogCaptureFixture) -> None:
    # M8: WARNING on set, INFO on clear, on the "sbroker" logger.
    host = FakeHost()
    state, _ = OverloadMeter(interval=0.001).init(host, 0)
    with caplog.at_level(logging.DEBUG, logger="sbroker"):
        state.update(sample(0, queue_delay=200 * MS))
        state.update(sample(MS, queue_delay=200 * MS))
        state.update(sample(2 * MS))
        state.update(sample(3 * MS))
    records = [r for r in caplog.records if r.name == "sbroker"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    assert all("message_queue_slow" in r.getMessage() for r in records)


def test_on_alarm_exception_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    # M7: on_alarm exceptions are logged and ignored; the alarm still flips.
    host = FakeHost()

    def boom(_host: Any, _active: bool, _description: str) -> None:
        raise RuntimeError("boom")

    state, _ = OverloadMeter(interval=0.001, on_alarm=boom).init(host, 0)
    with caplog.at_level(logging.INFO, logger="sbroker"):
        state.update(sample(0, queue_delay=200 * MS))
        assert state.update(sample(MS, queue_delay=200 * MS)) is None
    assert host.alarms == {"message_queue_slow"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


# ---------------------------------------------------------------------------
# Configuration values


@pytest.mark.parametrize("cls", [OverloadMeter, UnderloadMeter])
def test_defaults_eq_repr(cls: Any) -> None:
    meter = cls()
    assert (meter.target, meter.interval, meter.on_alarm) == (0.1, 1.0, None)
    assert meter == cls(target=0.1, interval=1.0)
    assert hash(meter) == hash(cls())
    assert meter != cls(target=0.2)
    assert repr(meter) == f"{cls.__name__}(target=0.1, interval=1.0, on_alarm=None)"
    with pytest.raises(AttributeError):
        meter.target = 1  # frozen


@pytest.mark.parametrize("cls", [OverloadMeter, UnderloadMeter])
@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": -1.0}, ValueError, "interval"),
        ({"interval": 1e-10}, ValueError, "interval"),
        ({"interval": math.inf}, ValueError, "interval"),
        ({"interval": math.nan}, ValueError, "interval"),
        ({"interval": None}, TypeError, "interval"),
        ({"interval": True}, TypeError, "interval"),
        ({"interval": "1"}, TypeError, "interval"),
        ({"target": math.nan}, ValueError, "target"),
        ({"target": math.inf}, ValueError, "target"),
        ({"target": None}, TypeError, "target"),
        ({"target": False}, TypeError, "target"),
        ({"target": "0.1"}, TypeError, "target"),
        ({"on_alarm": 3}, TypeError, "on_alarm"),
        ({"on_alarm": "print"}, TypeError, "on_alarm"),
    ],
)
def test_bad_parameters(cls: Any, kwargs: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        cls(**kwargs)


def test_overload_target_not_negative() -> None:
    # M11: target >= 0.
    with pytest.raises(ValueError, match="target"):
        OverloadMeter(target=-0.1)


def test_underload_target_may_be_negative() -> None:
    # M13.
    assert UnderloadMeter(target=-0.1).target == -0.1


# ---------------------------------------------------------------------------
# Property 2: a model of "since when has the current class held"


def _classify(kind: str, target_ms: int, qd: int, rt: int, lens: int) -> bool:
    """Independent reading of M11/M13: True for slow."""
    target = target_ms * MS
    if kind == "overload":
        fast = qd < target or (target == 0 and qd == 0 and lens == 0)
        return not fast
    return -rt >= target


class AlarmMachine(RuleBasedStateMachine):
    """Drive an alarm meter and the property-2 model side by side (times in ns)."""

    def __init__(self) -> None:
        super().__init__()
        self.host = FakeHost()
        self.calls = Recorder()

    def _meter(self, target_ms: int, interval_ms: int) -> Any:
        cls = OverloadMeter if self.kind == "overload" else UnderloadMeter
        return cls(target=target_ms / 1000, interval=interval_ms / 1000, on_alarm=self.calls)

    @initialize(
        kind=st.sampled_from(["overload", "underload"]),
        target_ms=st.integers(0, 3),
        negative=st.booleans(),
        interval_ms=st.integers(1, 4),
        start=st.integers(0, 10**6),
    )
    def start(
        self, kind: str, target_ms: int, negative: bool, interval_ms: int, start: int
    ) -> None:
        self.kind = kind
        if negative and kind == "underload":
            target_ms = -target_ms
        self.target_ms = target_ms
        self.interval = interval_ms * MS
        self.now = start
        self.state, first = self._meter(target_ms, interval_ms).init(self.host, start)
        assert first is None
        # The model.
        self.active = False
        self.run_slow: bool | None = None  # class of the current run
        self.run_since = 0  # first sample of the current run
        self.next: int | None = None

    def _expected_next(self) -> int | None:
        if self.run_slow is None or self.run_slow == self.active:
            return None
        return self.run_since + self.interval

    def _sample(self, qd_ms: int, rt_ms: int, lens: int) -> None:
        slow = _classify(self.kind, self.target_ms, qd_ms * MS, rt_ms * MS, lens)
        if slow != self.run_slow:
            self.run_slow, self.run_since = slow, self.now
        if slow != self.active and self.now - self.run_since >= self.interval:
            self.active = slow
        result = self.state.update(
            sample(self.now, queue_delay=qd_ms * MS, relative_time=rt_ms * MS, ask_len=lens)
        )
        assert result == self._expected_next()
        assert result is None or result >= self.now  # property 1
        self.next = result

    @rule(
        dt=st.sampled_from([0, 1, MS // 2, MS - 1, MS, MS + 1, 2 * MS, 5 * MS]),
        qd_ms=st.integers(0, 5),
        rt_ms=st.integers(-5, 5),
        lens=st.integers(0, 1),
    )
    def sample(self, dt: int, qd_ms: int, rt_ms: int, lens: int) -> None:
        self.now += dt
        self._sample(qd_ms, rt_ms, lens)

    @precondition(lambda self: self.next is not None)
    @rule(qd_ms=st.integers(0, 5), rt_ms=st.integers(-5, 5), lens=st.integers(0, 1))
    def sample_at_next(self, qd_ms: int, rt_ms: int, lens: int) -> None:
        assert self.next is not None
        self.now = max(self.now, self.next)
        self._sample(qd_ms, rt_ms, lens)

    @rule(dt=st.integers(0, 3 * MS), target_ms=st.integers(0, 3), interval_ms=st.integers(1, 4))
    def config_change(self, dt: int, target_ms: int, interval_ms: int) -> None:
        # M10
        self.now += dt
        if self.kind == "underload" and self.target_ms < 0:
            target_ms = -target_ms
        self.target_ms = target_ms
        self.interval = interval_ms * MS
        result = self.state.config_change(self._meter(target_ms, interval_ms), self.now)
        expected = self._expected_next()
        assert result == (None if expected is None else max(self.now, expected))
        self.next = result

    @rule(target_ms=st.integers(0, 3), interval_ms=st.integers(1, 4))
    def close_and_reinit(self, target_ms: int, interval_ms: int) -> None:
        # M8: close clears the alarm; a fresh meter on the same host starts inactive.
        self.state.close()
        self.active = False
        self.host_matches_model()
        if self.kind == "underload" and self.target_ms < 0:
            target_ms = -target_ms
        self.target_ms = target_ms
        self.interval = interval_ms * MS
        self.state, first = self._meter(target_ms, interval_ms).init(self.host, self.now)
        assert first is None
        self.run_slow = None
        self.next = None

    @invariant()
    def host_matches_model(self) -> None:
        if not hasattr(self, "state"):
            return
        description = "message_queue_slow" if self.kind == "overload" else "valve_slow"
        assert self.host.alarms == ({description} if self.active else set())
        # on_alarm alternates True/False, starting with True, in step with the host.
        flags = [active for _, active, _ in self.calls.calls]
        assert flags == [i % 2 == 0 for i in range(len(flags))]
        assert [(description, f) for f in flags] == self.host.alarm_calls
        assert all(d == description and h is self.host for h, _, d in self.calls.calls)


AlarmMachine.TestCase.settings = settings(max_examples=150, deadline=None, stateful_step_count=40)
TestAlarmMachine = AlarmMachine.TestCase
