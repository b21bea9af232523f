"""AdaptiveQueue (queues.md §5a): worked example, one test per rule, and a model check.

Rule tests drive the policy directly with times in milliseconds (``MS`` ns).
The state machine at the end runs the real policy beside an independent
reference model written from A1-A9 over a plain list, with times of a few ns
so that congestion is reached often.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import attrs
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

from sbroker.queues import AdaptiveQueue, QueuePolicy, QueueState, Request

MS = 1_000_000
EMPTY = "EMPTY"


# --------------------------------------------------------------------------
# A small harness for the rule tests: times in ms, results as comparable rows.


@dataclass(frozen=True)
class Step:
    """What one operation did: drops as {(name, sojourn_ms)}, result, len and W (ms)."""

    drops: frozenset[tuple[Any, float]] = field(default_factory=frozenset)
    result: Any = None
    len: int = 0
    W: float | None = None


class Harness:
    def __init__(
        self, policy: AdaptiveQueue, requests: Sequence[tuple[str, int]] = (), now: int = 0
    ) -> None:
        self._drops: list[tuple[Request, int]] = []
        self.requests: dict[str, Request] = {}
        given = [self.request(name, sent) for name, sent in requests]
        self.state, w = policy.init(given, now * MS, self._on_drop)
        self.first = self._step(now, w)

    def _on_drop(self, request: Request, now: int) -> None:
        self._drops.append((request, now))

    def request(self, name: str, sent: int) -> Request:
        request = Request(sent * MS, value=name, tag=name)
        self.requests[name] = request
        return request

    def _step(self, now: int, w: int | None, result: Any = None) -> Step:
        drops = frozenset((r.value, (t - r.send_time) / MS) for r, t in self._drops)
        assert all(t == now * MS for _, t in self._drops)
        self._drops.clear()
        return Step(drops, result, len(self.state), None if w is None else w / MS)

    def in_(self, name: str, now: int, sent: int | None = None) -> Step:
        request = self.request(name, now if sent is None else sent)
        return self._step(now, self.state.handle_in(request, now * MS))

    def out(self, now: int) -> Step:
        item = self.state.handle_out(now * MS)
        if item is None:
            return self._step(now, None, EMPTY)
        request, w = item
        return self._step(now, w, (request.value, (now * MS - request.send_time) / MS))

    def timeout(self, now: int) -> Step:
        return self._step(now, self.state.handle_timeout(now * MS))

    def cancel(self, tag: Hashable, now: int) -> Step:
        count, w = self.state.handle_cancel(tag, now * MS)
        return self._step(now, w, count)

    def remove(self, name: str, now: int) -> Step:
        return self._step(now, self.state.remove(self.requests[name], now * MS))

    def config(self, policy: AdaptiveQueue, now: int) -> Step:
        return self._step(now, self.state.config_change(policy, now * MS))


def drops(**sojourns: float) -> frozenset[tuple[str, float]]:
    """The drops of one step: request name to sojourn in ms."""
    return frozenset(sojourns.items())


def empty_at(state: QueueState) -> int:
    """White box: the state's ``empty_at`` (A2), in ns."""
    value: int = getattr(state, "_empty_at")
    return value


def adaptive(**kwargs: Any) -> AdaptiveQueue:
    """The A-X1 configuration (target 10 ms, interval 100 ms, timeout 1 s) with changes."""
    params: dict[str, Any] = {"target": 0.01, "interval": 0.1, "timeout": 1.0}
    params.update(kwargs)
    return AdaptiveQueue(**params)


# --------------------------------------------------------------------------
# The worked example.


def test_worked_example_a_x1() -> None:
    q = Harness(adaptive())
    assert q.first == Step(len=0, W=None)
    # 0 in a: A5 found empty, empty_at = 0; A8 W = min(0 + 1000, 0 + 100)
    assert q.in_("a", 0) == Step(len=1, W=100)
    # 20 in b: A8 unchanged, the congestion onset comes first
    assert q.in_("b", 20) == Step(len=2, W=100)
    # 50 out: A3 not congested (50 - 0 < 100), limit 1000; A6 fifo serves a
    assert q.out(50) == Step(result=("a", 50), len=1, W=100)
    # 95 in c
    assert q.in_("c", 95) == Step(len=2, W=100)
    # 100 timeout: A3 congested since 0, A4 limit 10 drops b; c has waited 5; A8 95 + 10
    assert q.timeout(100) == Step(drops(b=80), len=1, W=105)
    # 105 timeout: A4 drops c; A2 left empty, empty_at = 105
    assert q.timeout(105) == Step(drops(c=10), len=0, W=None)
    # 106 in d: A5 found empty, empty_at = 106; A8 W = min(1106, 206)
    assert q.in_("d", 106) == Step(len=1, W=206)
    # 150 out: A6 not congested, fifo; A2 left empty, empty_at = 150
    assert q.out(150) == Step(result=("d", 44), len=0, W=None)


# --------------------------------------------------------------------------
# A2: empty_at.


def test_init_with_requests_sets_empty_at_to_now() -> None:
    # A2: a takeover at 50 counts as the start, even though a and b are older.
    q = Harness(adaptive(), [("a", 0), ("b", 30)], now=50)
    # A8: min(0 + 1000, 50 + 100)
    assert q.first == Step(len=2, W=150)
    assert q.timeout(149) == Step(len=2, W=150)
    # A3 congested at 150: A4 drops everything that has waited 10
    assert q.timeout(150) == Step(drops(a=150, b=120), len=0, W=None)


def test_init_trim_and_check() -> None:
    # Q12 then A4 at init: head drop trims the oldest; timeout 0.05 expires b too.
    q = Harness(
        adaptive(timeout=0.05, max_len=2, drop="head"), [("a", 0), ("b", 40), ("c", 90)], now=90
    )
    assert q.first == Step(drops(a=90, b=50), len=1, W=140)  # min(90+50, 90+100)


def test_max_len_1_head_drop_does_not_reset_empty_at() -> None:
    # A2 last sentence: replacing the only request is not an emptying.
    q = Harness(adaptive(max_len=1, drop="head"))
    assert q.in_("a", 0) == Step(len=1, W=100)
    # a dropped by Q11; empty_at stays 0, so W is still 0 + 100, not 50 + 100
    assert q.in_("b", 50) == Step(drops(a=50), len=1, W=100)
    assert q.in_("c", 99) == Step(drops(b=49), len=1, W=100)
    # A3 congested since 0: c has waited 1, A8 99 + 10
    assert q.timeout(100) == Step(len=1, W=109)
    assert q.timeout(109) == Step(drops(c=10), len=0, W=None)


def test_max_len_1_tail_drop_keeps_the_queue() -> None:
    q = Harness(adaptive(max_len=1))
    assert q.in_("a", 0) == Step(len=1, W=100)
    assert q.in_("b", 50) == Step(drops(b=0), len=1, W=100)  # Q11 tail


def test_cancel_emptying_resets_empty_at() -> None:
    q = Harness(adaptive())
    assert q.in_("a", 0) == Step(len=1, W=100)
    # A7 cancel removes a: A2 left empty at 50
    assert q.cancel("a", 50) == Step(result=1, len=0, W=None)
    assert q.cancel("a", 60) == Step(result=0, len=0, W=None)
    # A5: the next arrival starts a fresh period: min(70 + 1000, 70 + 100)
    assert q.in_("b", 70) == Step(len=1, W=170)


def test_remove_emptying_resets_empty_at() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    assert q.remove("a", 50) == Step(len=0, W=None)
    assert q.remove("a", 60) == Step(len=0, W=None)  # not queued: nothing happens
    assert q.in_("b", 80) == Step(len=1, W=180)


def test_cancel_and_remove_run_the_check() -> None:
    # A7: removal first, then A4 at the operation's time.
    q = Harness(adaptive())
    q.in_("a", 0)
    q.in_("b", 20)
    q.in_("c", 95)
    assert q.cancel("c", 100) == Step(drops(a=100, b=80), result=1, len=0, W=None)
    q.in_("d", 110)
    q.in_("e", 200)
    assert q.remove("e", 210) == Step(drops(d=100), len=0, W=None)


def test_cancel_in_the_middle_keeps_empty_at() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 20)
    assert q.cancel("b", 30) == Step(result=1, len=2, W=100)
    assert q.remove("a", 40) == Step(len=1, W=100)  # c is still waiting since 0
    assert q.timeout(100) == Step(drops(c=80), len=0, W=None)


def test_every_emptying_sets_empty_at() -> None:
    # A2, white box: most of these resets only show in a later result.
    q = Harness(adaptive(), now=5)
    assert empty_at(q.state) == 5 * MS  # init
    q.out(7)  # found empty
    assert empty_at(q.state) == 7 * MS
    q.in_("a", 10)  # A5: found empty
    q.in_("b", 20)
    assert empty_at(q.state) == 10 * MS
    q.out(30)
    assert empty_at(q.state) == 10 * MS  # still non-empty
    q.out(40)  # A6: left empty
    assert empty_at(q.state) == 40 * MS
    q.in_("c", 50)
    q.cancel("c", 60)
    assert empty_at(q.state) == 60 * MS
    q.in_("d", 70)
    q.remove("d", 80)
    assert empty_at(q.state) == 80 * MS
    q.in_("e", 90)
    q.timeout(1090)  # A4 drops the last request
    assert empty_at(q.state) == 1090 * MS
    q.in_("f", 1100)
    q.config(adaptive(max_len=0), 1110)  # Q12 trims to empty
    assert empty_at(q.state) == 1110 * MS
    q.timeout(1120)  # found empty
    assert empty_at(q.state) == 1120 * MS


def test_a_queue_that_keeps_emptying_never_congests() -> None:
    q = Harness(adaptive())
    for start in range(0, 1000, 60):
        assert q.in_(f"a{start}", start) == Step(len=1, W=start + 100)
        assert q.in_(f"b{start}", start + 50) == Step(len=2, W=start + 100)
        assert q.out(start + 55) == Step(result=(f"a{start}", 55), len=1, W=start + 100)
        assert q.out(start + 56) == Step(result=(f"b{start}", 6), len=0, W=None)


# --------------------------------------------------------------------------
# A3/A4: congestion and the check.


def test_congestion_onset_drops_every_request_past_target() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    q.in_("b", 40)
    q.in_("c", 95)
    # A4: the limit is evaluated at 100, so a and b go together, c stays
    assert q.timeout(100) == Step(drops(a=100, b=60), len=1, W=105)


def test_congestion_persists_while_the_queue_stays_non_empty() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    assert q.timeout(100) == Step(drops(a=100), len=0, W=None)
    q.in_("b", 150)
    q.in_("c", 240)
    # b made the queue non-empty at 150: congested from 250
    assert q.out(245) == Step(result=("b", 95), len=1, W=250)
    assert q.in_("d", 249) == Step(len=2, W=250)
    assert q.timeout(250) == Step(drops(c=10), len=1, W=259)
    q.in_("e", 255)
    assert q.timeout(259) == Step(drops(d=10), len=1, W=265)
    # A5: an arrival runs the check and does not end the congestion
    assert q.in_("f", 265) == Step(drops(e=10), len=1, W=275)


def test_timeout_applies_while_not_congested() -> None:
    # A3: limit = timeout before the interval has passed.
    q = Harness(adaptive(timeout=0.05))
    assert q.in_("a", 0) == Step(len=1, W=50)  # min(0 + 50, 0 + 100)
    assert q.in_("b", 20) == Step(len=2, W=50)
    assert q.timeout(49) == Step(len=2, W=50)
    assert q.timeout(50) == Step(drops(a=50), len=1, W=70)
    # 20 + 50 = 70 comes before the congestion onset at 100
    assert q.timeout(70) == Step(drops(b=50), len=0, W=None)


def test_arrival_runs_the_check() -> None:
    # A5: handle_in drops other requests that are past the limit.
    q = Harness(adaptive())
    q.in_("a", 0)
    assert q.in_("b", 120) == Step(drops(a=120), len=1, W=130)


def test_timeout_none_no_drops_until_congested() -> None:
    q = Harness(adaptive(timeout=None))
    # A8: with timeout None only the congestion onset
    assert q.in_("a", 0) == Step(len=1, W=100)
    assert q.in_("b", 95) == Step(len=2, W=100)
    assert q.timeout(99) == Step(len=2, W=100)
    assert q.timeout(100) == Step(drops(a=100), len=1, W=105)


def test_timeout_none_empty_queue_never_drops() -> None:
    q = Harness(adaptive(timeout=None))
    q.in_("a", 0)
    assert q.out(5000) == Step(drops(a=5000), result=EMPTY, len=0, W=None)
    q.in_("b", 6000)
    assert q.out(6099) == Step(result=("b", 99), len=0, W=None)


def test_target_zero_drops_on_arrival_under_congestion() -> None:
    q = Harness(adaptive(target=0, timeout=0))
    # timeout 0: a request expires the instant it arrives
    assert q.in_("a", 0) == Step(drops(a=0), len=0, W=None)


def test_target_equal_timeout() -> None:
    q = Harness(adaptive(target=0.05, timeout=0.05))
    assert q.in_("a", 0) == Step(len=1, W=50)
    assert q.timeout(50) == Step(drops(a=50), len=0, W=None)


# --------------------------------------------------------------------------
# A6: handle_out.


def test_lifo_serves_the_newest() -> None:
    q = Harness(adaptive(out="lifo"))
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 20)
    assert q.out(30) == Step(result=("c", 10), len=2, W=100)
    assert q.out(40) == Step(result=("b", 30), len=1, W=100)


def test_lifo_check_takes_the_head_then_serves_the_tail() -> None:
    q = Harness(adaptive(out="lifo"))
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 95)
    q.in_("d", 97)
    # A4 drops a and b from the head (Q3), then lifo serves d; W = 95 + 10
    assert q.out(100) == Step(drops(a=100, b=90), result=("d", 3), len=1, W=105)


def test_lifo_all_expired_is_empty() -> None:
    q = Harness(adaptive(out="lifo"))
    q.in_("a", 0)
    q.in_("b", 10)
    assert q.out(200) == Step(drops(a=200, b=190), result=EMPTY, len=0, W=None)
    # A2: found/left empty at 200
    assert q.in_("c", 250) == Step(len=1, W=350)


def test_adaptive_out_serves_the_head_without_congestion() -> None:
    q = Harness(adaptive(out="adaptive"))
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 20)
    assert q.out(30) == Step(result=("a", 30), len=2, W=100)
    assert q.out(99) == Step(result=("b", 89), len=1, W=100)


def test_adaptive_out_serves_the_tail_under_congestion() -> None:
    q = Harness(adaptive(out="adaptive"))
    q.in_("a", 0)
    q.in_("b", 95)
    q.in_("c", 96)
    q.in_("d", 97)
    # A3 congested at 100: A4 drops a, then the newest is served
    assert q.out(100) == Step(drops(a=100), result=("d", 3), len=2, W=105)
    assert q.out(101) == Step(result=("c", 5), len=1, W=105)
    assert q.out(102) == Step(result=("b", 7), len=0, W=None)
    # A2: left empty at 102, so the next arrival is not congested: head first
    q.in_("e", 150)
    q.in_("f", 160)
    assert q.out(170) == Step(result=("e", 20), len=1, W=250)


def test_adaptive_out_with_min_len_under_congestion() -> None:
    q = Harness(adaptive(out="adaptive", min_len=2))
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 20)
    # A4 drops a only (min_len 2 protects b and c), then the tail c is served
    assert q.out(100) == Step(drops(a=100), result=("c", 80), len=1, W=None)


def test_out_on_empty_queue() -> None:
    q = Harness(adaptive())
    assert q.out(10) == Step(result=EMPTY, len=0, W=None)
    assert q.timeout(20) == Step(len=0, W=None)


# --------------------------------------------------------------------------
# min_len (A4, A8, P6).


def test_min_len_protects_and_silences_the_timer() -> None:
    q = Harness(adaptive(min_len=1))
    assert q.in_("a", 0) == Step(len=1, W=None)  # A8: len <= min_len
    assert q.in_("b", 10) == Step(len=2, W=100)
    # A4: a goes, b has waited 90 >= 10 but is protected by min_len
    assert q.timeout(100) == Step(drops(a=100), len=1, W=None)
    assert q.out(500) == Step(result=("b", 490), len=0, W=None)


def test_min_len_arrival_exposes_the_head() -> None:
    q = Harness(adaptive(min_len=1))
    q.in_("a", 0)
    # A5: the arrival lifts len above min_len while congested: a goes at once
    assert q.in_("b", 300) == Step(drops(a=300), len=1, W=None)


def test_min_len_out_may_leave_one_fewer() -> None:
    q = Harness(adaptive(min_len=1))
    q.in_("a", 0)
    q.in_("b", 10)
    q.in_("c", 20)
    # P6: drops stop at min_len, then the serve leaves min_len - 1
    assert q.out(200) == Step(drops(a=200, b=190), result=("c", 180), len=0, W=None)


# --------------------------------------------------------------------------
# max_len (Q10-Q12).


def test_max_len_tail_drop_still_runs_the_check() -> None:
    q = Harness(adaptive(max_len=2))
    q.in_("a", 0)
    q.in_("b", 20)
    assert q.in_("c", 30) == Step(drops(c=0), len=2, W=100)
    # at 100 the arrival is refused (Q11) and the check drops the congested queue
    assert q.in_("d", 100, sent=95) == Step(drops(d=5, a=100, b=80), len=0, W=None)
    # A2: left empty at 100
    assert q.in_("e", 150) == Step(len=1, W=250)


def test_max_len_head_drop_replaces_the_oldest() -> None:
    q = Harness(adaptive(max_len=2, drop="head"))
    q.in_("a", 0)
    q.in_("b", 20)
    # Q11 head: a goes, c enters; not an emptying, W stays 0 + 100
    assert q.in_("c", 30) == Step(drops(a=30), len=2, W=100)
    assert q.timeout(100) == Step(drops(b=80, c=70), len=0, W=None)


def test_max_len_zero_drops_every_arrival() -> None:
    q = Harness(adaptive(max_len=0, drop="head"))
    assert q.in_("a", 0) == Step(drops(a=0), len=0, W=None)  # Q10
    assert q.in_("b", 10, sent=5) == Step(drops(b=5), len=0, W=None)


# --------------------------------------------------------------------------
# A7: config_change.


def test_config_change_keeps_empty_at() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    # A7: empty_at stays 0: min(0 + 1000, 0 + 200), not 50 + 200
    assert q.config(adaptive(interval=0.2), 50) == Step(len=1, W=200)
    assert q.timeout(200) == Step(drops(a=200), len=0, W=None)


def test_config_change_applies_new_limits_at_once() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    q.in_("b", 30)
    q.in_("c", 60)
    # a shorter interval makes the queue congested at 70; new target 20
    assert q.config(adaptive(target=0.02, interval=0.05), 70) == Step(
        drops(a=70, b=40), len=1, W=80
    )
    # a shorter timeout while not congested (interval back to 1 s)
    assert q.config(adaptive(target=0.001, interval=1.0, timeout=0.005), 70) == Step(
        drops(c=10), len=0, W=None
    )


def test_config_change_trims() -> None:
    q = Harness(adaptive())
    for name, t in (("a", 0), ("b", 10), ("c", 20), ("d", 30)):
        q.in_(name, t)
    # Q12 head drop: the oldest go first
    assert q.config(adaptive(max_len=3, drop="head"), 40) == Step(drops(a=40), len=3, W=100)
    # Q12 tail drop: the newest go
    assert q.config(adaptive(max_len=1), 50) == Step(drops(c=30, d=20), len=1, W=100)
    # max_len 0: trimmed empty, A2 empty_at = 60
    assert q.config(adaptive(max_len=0), 60) == Step(drops(b=50), len=0, W=None)
    q.config(adaptive(), 60)
    assert q.in_("e", 70) == Step(len=1, W=170)


def test_config_change_out_and_min_len() -> None:
    q = Harness(adaptive())
    q.in_("a", 0)
    q.in_("b", 95)
    q.in_("c", 96)
    assert q.config(adaptive(out="adaptive", min_len=3), 100) == Step(len=3, W=None)
    assert q.config(adaptive(out="adaptive", min_len=2), 100) == Step(drops(a=100), len=2, W=None)
    assert q.out(101) == Step(result=("c", 5), len=1, W=None)


# --------------------------------------------------------------------------
# A9, protocol, configuration value.


def test_fq_out() -> None:
    q = Harness(adaptive())
    assert q.state.fq_out(7 * MS) == (None, 7 * MS)  # A9
    q.in_("a", 10)
    request, w = q.state.fq_out(20 * MS)
    assert request is q.requests["a"] and w is None
    q.in_("b", 30)
    q.in_("c", 40)
    request, w = q.state.fq_out(50 * MS)
    assert request is q.requests["b"] and w == 130 * MS


def test_terminate_and_send_time() -> None:
    q = Harness(adaptive())
    assert q.state.send_time() is None
    q.in_("a", 0)
    q.in_("b", 20)
    assert q.state.send_time() == 0
    assert len(q.state) == 2
    assert q.state.terminate() == [q.requests["a"], q.requests["b"]]
    assert len(q.state) == 0


def test_protocol_and_value_semantics() -> None:
    policy = AdaptiveQueue()
    assert policy == AdaptiveQueue(
        target=0.1, interval=1.0, timeout=5.0, out="fifo", drop="tail", min_len=0, max_len=None
    )
    assert hash(policy) == hash(AdaptiveQueue())
    assert policy != AdaptiveQueue(out="adaptive")
    assert isinstance(policy, QueuePolicy)
    text = repr(AdaptiveQueue(target=0.2, out="adaptive"))
    assert "target=0.2" in text and "out='adaptive'" in text and "timeout=5.0" in text
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.target = 1.0  # type: ignore[misc]
    # one policy object, many states
    first, _ = policy.init([], 0, lambda r, t: None)
    second, _ = policy.init([], 0, lambda r, t: None)
    assert isinstance(first, QueueState)
    assert first is not second


def test_defaults_in_ns() -> None:
    q = Harness(AdaptiveQueue())
    # A8: min(0 + 5000, 0 + 1000)
    assert q.in_("a", 0) == Step(len=1, W=1000)
    assert q.timeout(1000) == Step(drops(a=1000), len=0, W=None)


# --------------------------------------------------------------------------
# A1 validation.


def test_timeout_compared_in_ns() -> None:
    # both convert to 100 000 000 ns, so this is timeout == target
    AdaptiveQueue(target=0.1000000004, timeout=0.1)
    AdaptiveQueue(target=0.1, timeout=0.1)
    AdaptiveQueue(target=0, timeout=0)
    AdaptiveQueue(target=2, timeout=None)
    with pytest.raises(ValueError, match="timeout"):
        AdaptiveQueue(target=0.1000000006, timeout=0.1)  # 100 000 001 > 100 000 000 ns


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"target": -1}, ValueError, "target"),
        ({"target": None}, TypeError, "target"),
        ({"target": "0.1"}, TypeError, "target"),
        ({"target": True}, TypeError, "target"),
        ({"target": float("nan")}, ValueError, "target"),
        ({"target": float("inf"), "timeout": None}, ValueError, "target"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": 1e-10}, ValueError, "interval"),
        ({"interval": -1}, ValueError, "interval"),
        ({"interval": None}, TypeError, "interval"),
        ({"timeout": 0.05}, ValueError, "timeout"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"out": "sideways"}, ValueError, "out"),
        ({"out": None}, TypeError, "out"),
        ({"drop": "middle"}, ValueError, "drop"),
        ({"min_len": True}, TypeError, "min_len"),
        ({"min_len": -1}, ValueError, "min_len"),
        ({"min_len": 1.0}, TypeError, "min_len"),
        ({"max_len": -1}, ValueError, "max_len"),
        ({"max_len": False}, TypeError, "max_len"),
        ({"min_len": 3, "max_len": 2}, ValueError, "max_len"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        AdaptiveQueue(**kwargs)


def test_valid_edge_parameters() -> None:
    AdaptiveQueue(target=0, interval=1e-9, timeout=0)
    AdaptiveQueue(out="lifo", drop="head", min_len=2, max_len=2)
    AdaptiveQueue(max_len=0)
    AdaptiveQueue(target=1, interval=2)  # ints are durations too


# --------------------------------------------------------------------------
# Reference model (A1-A9 over a plain list) and the state machine.


@dataclass(frozen=True)
class Config:
    """Model parameters, all times in ns."""

    target: int
    interval: int
    timeout: int | None
    out: str
    drop: str
    min_len: int
    max_len: int | None


class Model:
    """AdaptiveQueue as the spec words it, as plainly as possible."""

    def __init__(self, config: Config, requests: list[Request], now: int) -> None:
        self.config = config
        self.queue = list(requests)
        self.empty_at = now  # A2
        self.size_drops = self.trim(now)
        self.time_drops = self.check(now)

    def congested(self, now: int) -> bool:  # A3
        return len(self.queue) > 0 and now - self.empty_at >= self.config.interval

    def limit(self, now: int) -> int | None:  # A3
        return self.config.target if self.congested(now) else self.config.timeout

    def check(self, now: int) -> list[Request]:  # A4
        dropped = []
        while len(self.queue) > self.config.min_len:
            limit = self.limit(now)
            if limit is None or now - self.queue[0].send_time < limit:
                break
            dropped.append(self.queue.pop(0))
        if not self.queue:
            self.empty_at = now  # A2
        return dropped

    def wake(self, now: int) -> int | None:  # A8
        if len(self.queue) <= self.config.min_len:
            return None
        head = self.queue[0].send_time
        if self.congested(now):
            return head + self.config.target
        onset = self.empty_at + self.config.interval
        if self.config.timeout is None:
            return onset
        return min(head + self.config.timeout, onset)

    def trim(self, now: int) -> list[Request]:  # Q12
        dropped = []
        max_len = self.config.max_len
        while max_len is not None and len(self.queue) > max_len:
            if self.config.drop == "head":
                dropped.append(self.queue.pop(0))
            else:
                dropped.append(self.queue.pop())
        if not self.queue:
            self.empty_at = now
        return dropped

    def handle_in(self, request: Request, now: int) -> int | None:  # A5
        self.size_drops = []
        if not self.queue:
            self.empty_at = now
        max_len = self.config.max_len
        if max_len is not None and len(self.queue) == max_len:  # Q11
            if self.config.drop == "head" and max_len > 0:  # Q10
                self.size_drops.append(self.queue.pop(0))
                self.queue.append(request)
            else:
                self.size_drops.append(request)
        else:
            self.queue.append(request)
        self.time_drops = self.check(now)
        return self.wake(now)

    def handle_out(self, now: int) -> tuple[Request | None, int | None]:  # A6
        self.size_drops = []
        self.time_drops = self.check(now)
        if not self.queue:
            self.empty_at = now
            return None, None
        newest = self.config.out == "lifo" or (
            self.config.out == "adaptive" and self.congested(now)
        )
        request = self.queue.pop() if newest else self.queue.pop(0)
        if not self.queue:
            self.empty_at = now
        return request, self.wake(now)

    def handle_timeout(self, now: int) -> int | None:  # A7
        self.size_drops = []
        self.time_drops = self.check(now)
        return self.wake(now)

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:  # A7
        kept = [r for r in self.queue if r.tag != tag]
        count = len(self.queue) - len(kept)
        self.queue = kept
        return count, self.handle_timeout(now)

    def remove(self, request: Request, now: int) -> int | None:  # A7
        self.queue = [r for r in self.queue if r is not request]
        return self.handle_timeout(now)

    def config_change(self, config: Config, now: int) -> int | None:  # A7
        self.config = config
        self.size_drops = self.trim(now)
        self.time_drops = self.check(now)
        return self.wake(now)


@st.composite
def configs(draw: st.DrawFn) -> tuple[AdaptiveQueue, Config]:
    target = draw(st.integers(0, 5))
    interval = draw(st.integers(1, 10))
    timeout = draw(st.none() | st.integers(0, 12).map(lambda extra: target + extra))
    out = draw(st.sampled_from(["fifo", "lifo", "adaptive"]))
    drop = draw(st.sampled_from(["head", "tail"]))
    min_len = draw(st.integers(0, 3))
    max_len = draw(st.none() | st.integers(0, 4).map(lambda extra: min_len + extra))
    policy = AdaptiveQueue(
        target=target / 1e9,
        interval=interval / 1e9,
        timeout=None if timeout is None else timeout / 1e9,
        out=out,
        drop=drop,
        min_len=min_len,
        max_len=max_len,
    )
    return policy, Config(target, interval, timeout, out, drop, min_len, max_len)


TAGS = st.sampled_from(["x", "y", "z", None])


class AdaptiveMachine(RuleBasedStateMachine):
    """The real policy and the model side by side, compared after every operation."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.last_send = 0
        self.dropped: list[tuple[Request, int]] = []
        self.given: list[Request] = []
        self.left: dict[Request, str] = {}  # P1: how each request left
        self.last_w: int | None = None
        self.seen_empty_at = 0  # independent observation of A2 through len()
        self.busy = True  # an operation is under way (teardown skips a failed one)

    # -- plumbing --

    def on_drop(self, request: Request, now: int) -> None:
        self.dropped.append((request, now))

    def new_request(self, tag: Hashable, age: int) -> Request:
        send_time = max(self.last_send, self.now - age)  # Q2: non-decreasing, <= now
        self.last_send = send_time
        request = Request(send_time, value=len(self.given), tag=tag)
        self.given.append(request)
        return request

    def leave(self, request: Request, how: str) -> None:
        assert request not in self.left, f"{request} left twice"  # P1
        self.left[request] = how

    def before(self) -> None:
        self.busy = True
        if len(self.state) == 0:
            self.seen_empty_at = self.now

    def after(self, w: int | None, *, served: bool = False, reconfigured: bool = False) -> None:
        """Compare the operation's drops and W with the model, then check properties."""
        now = self.now
        model = self.model
        assert all(t == now for _, t in self.dropped)
        real = [r for r, _ in self.dropped]
        assert len(real) == len(set(real))
        size_drops, time_drops = set(model.size_drops), set(model.time_drops)
        assert not size_drops & time_drops
        assert set(real) == size_drops | time_drops
        for request in real:
            assert now - request.send_time >= 0  # P4
            self.leave(request, "dropped")
        if time_drops:
            # P5: time-based drops take the oldest: all precede every survivor
            survivors = model.queue
            assert all(r.seq < s.seq for r in time_drops for s in survivors)
            # P6: never below min_len (an out counts the request it serves)
            assert len(model.queue) + served >= model.config.min_len
            # P9: nothing time-based before the last W, except on reconfiguration
            if not reconfigured and self.last_w is not None:
                assert now >= self.last_w
            # P16: waited timeout, or target while congested (observed via len())
            cfg = model.config
            congested = now - self.seen_empty_at >= cfg.interval
            for r in time_drops:
                sojourn = now - r.send_time
                assert (cfg.timeout is not None and sojourn >= cfg.timeout) or (
                    congested and sojourn >= cfg.target
                )
        self.dropped.clear()
        # A2 (white box): empty_at also moves where no result can show it yet
        assert empty_at(self.state) == model.empty_at
        # A8/P10
        assert w == model.wake(now)
        assert w is None or w >= now
        assert (w is None) == (len(model.queue) <= model.config.min_len)
        self.last_w = w
        if len(self.state) == 0:
            self.seen_empty_at = now
        self.busy = False

    # -- rules --

    @initialize(config=configs(), count=st.integers(0, 4), now=st.integers(0, 20))
    def start(self, config: tuple[AdaptiveQueue, Config], count: int, now: int) -> None:
        self.now = now
        requests = [self.new_request(None, count - 1 - i) for i in range(count)]
        policy, cfg = config
        self.state, w = policy.init(requests, now, self.on_drop)
        self.model = Model(cfg, requests, now)
        self.seen_empty_at = now
        self.after(w, reconfigured=True)

    @rule(dt=st.integers(1, 6))
    def advance(self, dt: int) -> None:
        self.now += dt

    @rule(tags=st.lists(TAGS, min_size=1, max_size=3), age=st.integers(0, 4))
    def enqueue(self, tags: list[Hashable], age: int) -> None:
        # one to three arrivals at the same time, each compared on its own
        for tag in tags:
            request = self.new_request(tag, age)
            self.before()
            w = self.state.handle_in(request, self.now)
            assert self.model.handle_in(request, self.now) == w
            self.after(w)

    @rule(fq=st.booleans())
    def dequeue(self, fq: bool) -> None:
        self.before()
        if fq:
            request, w = self.state.fq_out(self.now)
            if request is None:
                assert w == self.now  # A9
                w = None
        else:
            item = self.state.handle_out(self.now)
            request, w = (None, None) if item is None else item
        expected, expected_w = self.model.handle_out(self.now)
        assert request is expected
        assert w == expected_w
        if request is not None:
            self.leave(request, "served")
        self.after(w, served=request is not None)

    @rule()
    def timeout(self) -> None:
        self.before()
        w = self.state.handle_timeout(self.now)
        assert w == self.model.handle_timeout(self.now)
        self.after(w)

    @precondition(lambda self: self.last_w is not None)
    @rule()
    def timeout_at_wake(self) -> None:
        assert self.last_w is not None
        self.now = max(self.now, self.last_w)
        self.timeout()

    @rule(tag=TAGS, known=st.booleans())
    def cancel(self, tag: Hashable, known: bool) -> None:
        """A7 by ``handle_cancel``, or (``known``) by ``cancel_requests`` given every request."""
        cancelled = [r for r in self.model.queue if r.tag == tag]
        self.before()
        if known:
            count, w = self.state.cancel_requests(tag, self.given, self.now)
        else:
            count, w = self.state.handle_cancel(tag, self.now)
        assert (count, w) == self.model.handle_cancel(tag, self.now)
        for request in cancelled:
            self.leave(request, "cancelled")
        self.after(w)

    @rule(index=st.integers(0, 50), queued=st.booleans())
    def remove(self, index: int, queued: bool) -> None:
        pool = self.model.queue if queued and self.model.queue else self.given
        if not pool:
            return
        request = pool[index % len(pool)]
        was_queued = request in self.model.queue
        self.before()
        w = self.state.remove(request, self.now)
        assert w == self.model.remove(request, self.now)
        if was_queued:
            self.leave(request, "removed")
        self.after(w)

    @rule(config=configs())
    def config_change(self, config: tuple[AdaptiveQueue, Config]) -> None:
        policy, cfg = config
        self.before()
        w = self.state.config_change(policy, self.now)
        assert w == self.model.config_change(cfg, self.now)
        self.after(w, reconfigured=True)

    @rule(config=configs())
    def hand_over(self, config: tuple[AdaptiveQueue, Config]) -> None:
        # Q7 across states: terminate, then init takes the requests over (A2)
        self.busy = True
        requests = self.state.terminate()
        assert requests == self.model.queue  # P3
        assert len(self.state) == 0
        policy, cfg = config
        self.state, w = policy.init(requests, self.now, self.on_drop)
        self.model = Model(cfg, requests, self.now)
        self.seen_empty_at = self.now
        self.after(w, reconfigured=True)

    # -- invariants --

    @invariant()
    def same_queue(self) -> None:
        model = self.model.queue
        assert len(self.state) == len(model)  # P2
        assert self.state.send_time() == (model[0].send_time if model else None)  # P11
        max_len = self.model.config.max_len
        assert max_len is None or len(model) <= max_len
        # P3 order of the model itself: insertion order
        assert [r.seq for r in model] == sorted(r.seq for r in model)
        # P1: every request is either queued or has left, not both
        assert set(self.given) == set(self.left) | set(model)
        assert not set(self.left) & set(model)

    def teardown(self) -> None:
        if self.busy:
            return  # an operation failed half-way: its error is the report
        requests = self.state.terminate()
        assert requests == self.model.queue  # P3: oldest first
        for request in requests:
            self.leave(request, "terminated")
        assert set(self.left) == set(self.given)  # P1


AdaptiveMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, derandomize=True, database=None
)
TestAdaptiveModel = AdaptiveMachine.TestCase
