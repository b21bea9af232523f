"""Tests of CodelQueue (queues.md §4).

Three parts: the worked examples C-X1..C-X5 row by row, a hypothesis state
machine driving the real policy beside a small reference model written from
the C3-C12 pseudocode (P15), and parameter validation (C1, Q9).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from sbroker.queues import CodelQueue, Request
from sbroker.queues.codel import CodelQueue as CodelQueueDirect

MS = 1_000_000  # ns per ms
EMPTY = "EMPTY"


# ---------------------------------------------------------------------------
# Worked examples
# ---------------------------------------------------------------------------


class Trace:
    """Replays a worked-example table on the policy alone (queues.md §0)."""

    def __init__(self, policy: CodelQueue, now: int = 0) -> None:
        self.drops: list[tuple[Request, int]] = []
        self.requests: dict[str, Request] = {}
        self.state, self.w = policy.init([], now, self._on_drop)

    def _on_drop(self, request: Request, now: int) -> None:
        self.drops.append((request, now))

    def _name(self, request: Request) -> str:
        return str(request.value)

    def row(
        self,
        t: int,
        event: str,
        names: str = "",
        *,
        drops: dict[str, int] | None = None,
        result: tuple[str, int] | str | None = None,
        length: int,
        w: int | None,
        policy: CodelQueue | None = None,
    ) -> None:
        """Run one row at time ``t`` (ns) and check drops, result, len and W."""
        start = len(self.drops)
        if event == "in":
            for name in names:
                request = Request(t, name)
                self.requests[name] = request
                assert self.state.handle_in(request, t) == w, name  # C6, C4
        elif event == "out":
            served = self.state.handle_out(t)
            if served is None:
                assert result == EMPTY
                assert w is None  # C4: EMPTY means no wake
            else:
                request, got_w = served
                assert got_w == w
                assert result == (self._name(request), t - request.send_time)
        elif event == "timeout":
            assert self.state.handle_timeout(t) == w  # C5
        elif event == "config_change":
            assert policy is not None
            assert self.state.config_change(policy, t) == w  # C12
        else:  # pragma: no cover
            raise AssertionError(event)
        dropped = self.drops[start:]
        assert all(when == t for _, when in dropped)
        # Q13: compare the set of (request, sojourn) pairs.
        got = {(self._name(r), when - r.send_time) for r, when in dropped}
        assert got == set((drops or {}).items())
        assert len(self.state) == length

    def codel(self) -> dict[str, Any]:
        """The CoDel variables of C2 (white box)."""
        s: Any = self.state
        return {
            "mode": s._mode.name,
            "count": s._count,
            "drop_next": s._drop_next,
            "check_at": s._check_at,
            "first_drop": s._first_drop,
        }

    def assert_codel(self, **expected: Any) -> None:
        got = self.codel()
        assert {k: got[k] for k in expected} == expected


def test_step_values() -> None:
    # C14, interval 100 ms.
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    s: Any = q.state
    expected = [100_000_000, 70_710_678, 57_735_026, 50_000_000, 44_721_359, 40_824_829]
    assert [s._step(c) for c in range(1, 7)] == expected


def run_cx1() -> Trace:
    """C-X1: fifo, min_len 0: detection, first drop, control law, out-path drop."""
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    # 1: each arrival finds a fast head: check_at moves to its target time (C5).
    q.row(0, "in", "abcdefg", length=7, w=10 * MS)
    q.assert_codel(mode="OK", check_at=10 * MS)
    # 2: the head turned slow: OK -> SLOW (C3 go_slow).
    q.row(10 * MS, "timeout", length=7, w=110 * MS)
    q.assert_codel(mode="SLOW", first_drop=110 * MS)
    # 3: first_drop reached: first drop of the episode (C5, start_drops).
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=6, w=210 * MS)
    q.assert_codel(mode="DROPPING", count=1, drop_next=210 * MS)
    # 4: next drop, count 2, drop_next += step(2) (C3 advance).
    q.row(210 * MS, "timeout", drops={"b": 210 * MS}, length=5, w=280_710_678)
    q.assert_codel(mode="DROPPING", count=2, drop_next=280_710_678)
    # 5: C7: check_at > now: c served slow, nothing changes.
    q.row(250 * MS, "out", result=("c", 250 * MS), length=4, w=280_710_678)
    q.assert_codel(mode="DROPPING", count=2, drop_next=280_710_678)
    # 6: C7: d dropped (count deferred, N6); e slow: advance to 338.445704 > now.
    q.row(300 * MS, "out", drops={"d": 300 * MS}, result=("e", 300 * MS), length=2, w=338_445_704)
    q.assert_codel(mode="DROPPING", count=3, drop_next=338_445_704)
    # 7: timer exactly at drop_next (C5).
    q.row(338_445_704, "timeout", drops={"f": 338_445_704}, length=1, w=388_445_704)
    q.assert_codel(mode="DROPPING", count=4, drop_next=388_445_704)
    # 8: C6: check_at not reached.
    q.row(358 * MS, "in", "h", length=2, w=388_445_704)
    # 9: C7: not due, g served slow, still DROPPING.
    q.row(360 * MS, "out", result=("g", 360 * MS), length=1, w=388_445_704)
    q.assert_codel(mode="DROPPING")
    # 10: C7: fast dequeue -> OK, check_at = h's target time.
    q.row(365 * MS, "out", result=("h", 7 * MS), length=0, w=None)
    q.assert_codel(mode="OK", check_at=368 * MS, count=4, drop_next=388_445_704)
    return q


def test_cx1_fifo_control_law() -> None:
    run_cx1()


def test_cx2_reuse_rule() -> None:
    q = run_cx1()
    # 11
    q.row(400 * MS, "in", "ijk", length=3, w=410 * MS)
    q.assert_codel(mode="OK")
    # 12
    q.row(410 * MS, "timeout", length=3, w=510 * MS)
    q.assert_codel(mode="SLOW", first_drop=510 * MS)
    # 13: C3 reuse rule: count 4 > 2 and 510 - 388.445704 < 800: count 2.
    q.row(510 * MS, "timeout", drops={"i": 110 * MS}, length=2, w=580_710_678)
    q.assert_codel(mode="DROPPING", count=2, drop_next=580_710_678)
    # 14
    q.row(580_710_678, "timeout", drops={"j": 180_710_678}, length=1, w=638_445_704)
    q.assert_codel(mode="DROPPING", count=3, drop_next=638_445_704)
    # 15: C7: not due: k served, still DROPPING with an empty queue.
    q.row(600 * MS, "out", result=("k", 200 * MS), length=0, w=None)
    q.assert_codel(mode="DROPPING")
    # 16: C7: empty out resets to OK.
    q.row(700 * MS, "out", result=EMPTY, length=0, w=None)
    q.assert_codel(mode="OK", check_at=700 * MS)
    # 17
    q.row(1500 * MS, "in", "lm", length=2, w=1510 * MS)
    q.assert_codel(mode="OK")
    # 18
    q.row(1510 * MS, "timeout", length=2, w=1610 * MS)
    q.assert_codel(mode="SLOW", first_drop=1610 * MS)
    # 19: 1610 - 638.445704 >= 800: no reuse, count 1.
    q.row(1610 * MS, "timeout", drops={"l": 110 * MS}, length=1, w=1710 * MS)
    q.assert_codel(mode="DROPPING", count=1, drop_next=1710 * MS)


def test_cx3_lifo_min_len() -> None:
    q = Trace(CodelQueue(target=0.01, interval=0.1, out="lifo", min_len=1))
    # 1: len <= min_len: no check, no wake (C5, C4).
    q.row(0, "in", "a", length=1, w=None)
    # 2
    q.row(0, "in", "bcd", length=4, w=10 * MS)
    # 3
    q.row(10 * MS, "timeout", length=4, w=110 * MS)
    q.assert_codel(mode="SLOW", first_drop=110 * MS)
    # 4
    q.row(50 * MS, "in", "e", length=5, w=110 * MS)
    # 5: C8: check_at 110 > 55: tail served, still SLOW.
    q.row(55 * MS, "out", result=("e", 5 * MS), length=4, w=110 * MS)
    q.assert_codel(mode="SLOW")
    # 6
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=3, w=210 * MS)
    q.assert_codel(mode="DROPPING", count=1, drop_next=210 * MS)
    # 7
    q.row(150 * MS, "in", "f", length=4, w=210 * MS)
    # 8: C8: a fast lifo serve does not end DROPPING.
    q.row(155 * MS, "out", result=("f", 5 * MS), length=3, w=210 * MS)
    q.assert_codel(mode="DROPPING")
    # 9: C8: rest [b, c] evaluated with floor 0 (C9): b dropped; 1 left = min_len.
    q.row(210 * MS, "out", drops={"b": 210 * MS}, result=("d", 210 * MS), length=1, w=None)
    q.assert_codel(mode="DROPPING", count=2, drop_next=280_710_678)
    # 10: C6: the arrival lifts len above min_len and the drop is due.
    q.row(300 * MS, "in", "g", drops={"c": 300 * MS}, length=1, w=None)
    q.assert_codel(mode="DROPPING", count=3, drop_next=338_445_704)
    # 11: C8: fewer than min_len left: OK.
    q.row(305 * MS, "out", result=("g", 5 * MS), length=0, w=None)
    q.assert_codel(mode="OK")


def test_cx4_config_change_clamps() -> None:
    q = Trace(CodelQueue(target=0.01, interval=1.0))
    # 1
    q.row(0, "in", "abc", length=3, w=10 * MS)
    # 2
    q.row(10 * MS, "timeout", length=3, w=1010 * MS)
    q.assert_codel(mode="SLOW", first_drop=1010 * MS)
    # 3: C12: first_drop clamped to now + new interval.
    new = CodelQueue(target=0.01, interval=0.1)
    q.row(20 * MS, "config_change", policy=new, length=3, w=120 * MS)
    q.assert_codel(mode="SLOW", first_drop=120 * MS, check_at=120 * MS)
    # 4
    q.row(120 * MS, "timeout", drops={"a": 120 * MS}, length=2, w=220 * MS)
    q.assert_codel(mode="DROPPING", count=1, drop_next=220 * MS)
    # 5: C12: drop_next clamped to 130 + 50.
    new = CodelQueue(target=0.01, interval=0.05)
    q.row(130 * MS, "config_change", policy=new, length=2, w=180 * MS)
    q.assert_codel(mode="DROPPING", drop_next=180 * MS, check_at=180 * MS)
    # 6: step(2) with the new interval: 35.355339 ms.
    q.row(180 * MS, "timeout", drops={"b": 180 * MS}, length=1, w=215_355_339)
    q.assert_codel(mode="DROPPING", count=2, drop_next=215_355_339)


def test_cx5_late_timer_catch_up() -> None:
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    # 1
    q.row(0, "in", "abcdef", length=6, w=10 * MS)
    # 2
    q.row(10 * MS, "timeout", length=6, w=110 * MS)
    # 3
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=5, w=210 * MS)
    q.assert_codel(count=1, drop_next=210 * MS)
    # 4: C5 catch-up loop: drops until drop_next > now.
    drops = dict.fromkeys("bcde", 400 * MS)
    q.row(400 * MS, "timeout", drops=drops, length=1, w=433_167_063)
    q.assert_codel(mode="DROPPING", count=5, drop_next=433_167_063)
    # 5: C6: not due.
    q.row(400 * MS, "in", "g", length=2, w=433_167_063)
    # 6: f dropped; g (sojourn 33 ms) stays since drop_next > now.
    q.row(433_167_063, "timeout", drops={"f": 433_167_063}, length=1, w=473_991_892)
    q.assert_codel(mode="DROPPING", count=6, drop_next=473_991_892)


def test_c15_never_drop_fast_request() -> None:
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    q.row(0, "in", "ab", length=2, w=10 * MS)
    q.row(10 * MS, "timeout", length=2, w=110 * MS)
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=1, w=210 * MS)
    # C15: b dropped (count 2, drop_next 280.710678 <= 400), but c is fast:
    # the catch-up loop stops and check_at moves to c's target time.
    q.row(400 * MS, "in", "c", drops={"b": 400 * MS}, length=1, w=410 * MS)
    q.assert_codel(mode="DROPPING", count=2, drop_next=280_710_678, check_at=410 * MS)
    q.row(410 * MS, "timeout", drops={"c": 10 * MS}, length=0, w=None)
    q.assert_codel(count=3)


def test_init_takes_over_slow_queue() -> None:
    # C11: a taken-over queue whose head is already slow becomes SLOW at once.
    drops: list[Request] = []
    reqs = [Request(0, "a"), Request(5 * MS, "b")]
    state, w = CodelQueue(target=0.01, interval=0.1).init(
        reqs, 50 * MS, lambda r, now: drops.append(r)
    )
    assert w == 150 * MS
    assert not drops
    assert state.terminate() == reqs


def test_init_trims_then_checks() -> None:
    # C11 / Q12: trimming before the check, tail drop keeps the oldest.
    drops: list[Request] = []
    reqs = [Request(t * MS, t) for t in range(4)]
    policy = CodelQueue(target=0.01, interval=0.1, max_len=2)
    state, w = policy.init(reqs, 3 * MS, lambda r, now: drops.append(r))
    assert set(drops) == set(reqs[2:])
    assert len(state) == 2
    assert w == 10 * MS


def test_fq_out_remove_time() -> None:
    # C13: remove_time = max(drop_next + 8 * interval, now).
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    assert q.state.fq_out(5 * MS) == (None, 800 * MS)  # drop_next = 0 at init
    assert q.state.fq_out(900 * MS) == (None, 900 * MS)
    q2 = run_cx1()
    assert q2.state.fq_out(400 * MS) == (None, 388_445_704 + 800 * MS)


def test_lifo_last_request_drop() -> None:
    # C8 last(): the only request left, slow, SLOW past first_drop: dropped, EMPTY.
    q = Trace(CodelQueue(target=0.01, interval=0.1, out="lifo"))
    q.row(0, "in", "a", length=1, w=10 * MS)
    q.row(10 * MS, "timeout", length=1, w=110 * MS)
    q.row(120 * MS, "out", drops={"a": 120 * MS}, result=EMPTY, length=0, w=None)
    q.assert_codel(mode="OK", count=1, drop_next=220 * MS, check_at=120 * MS)


def test_lifo_check_at_gates_last_serve() -> None:
    # N5: lifo, r == 0 and a fast request: served silently while check_at > now,
    # reset to OK otherwise (C8).
    q = Trace(CodelQueue(target=0.01, interval=0.1, out="lifo"))
    q.row(0, "in", "ab", length=2, w=10 * MS)
    q.row(10 * MS, "timeout", length=2, w=110 * MS)
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=1, w=210 * MS)
    q.row(209 * MS, "in", "c", length=2, w=210 * MS)
    q.row(210 * MS, "timeout", drops={"b": 210 * MS}, length=1, w=280_710_678)
    # check_at 280.710678 > 215: c served with no evaluation, still DROPPING.
    q.row(215 * MS, "out", result=("c", 6 * MS), length=0, w=None)
    q.assert_codel(mode="DROPPING", check_at=280_710_678)
    q.row(300 * MS, "in", "d", length=1, w=310 * MS)  # d fast: check_at 310
    q.row(309 * MS, "in", "e", length=2, w=310 * MS)
    assert q.state.remove(q.requests["d"], 309 * MS) == 310 * MS  # C10: not due
    # check_at 310 <= 310 and e is fast (sojourn 1): reset to OK.
    q.row(310 * MS, "out", result=("e", 1 * MS), length=0, w=None)
    q.assert_codel(mode="OK", check_at=310 * MS, count=2)


def test_lifo_last_never_drops_fast_request() -> None:
    # C8 last() with C15: after the head is dropped, the served request is
    # alone and a drop is due, but it is fast, so it is served (Erlang drops it).
    q = Trace(CodelQueue(target=0.01, interval=0.001, out="lifo"))
    q.row(0, "in", "ab", length=2, w=10 * MS)
    q.row(10 * MS, "timeout", length=2, w=11 * MS)
    q.row(11 * MS, "timeout", drops={"a": 11 * MS}, length=1, w=12 * MS)
    q.row(11_500_000, "in", "x", length=2, w=12 * MS)
    # evaluate(floor 0): b dropped, count 2, drop_next 12.707106 <= 14; x is fast.
    q.row(14 * MS, "out", drops={"b": 14 * MS}, result=("x", 2_500_000), length=0, w=None)
    q.assert_codel(mode="DROPPING", count=2, drop_next=12_707_106)


@pytest.mark.parametrize(
    ("arrival", "count", "gap"),
    [
        (1_078_445_704, 1, 100 * MS),  # now - drop_next == 8 * interval: no reuse
        (1_078_445_703, 2, 70_710_678),  # 1 ns earlier: count 4 - 2, step(2)
    ],
)
def test_reuse_rule_boundary(arrival: int, count: int, gap: int) -> None:
    # C3 start_drops: reuse only while now - drop_next < 8 * interval (strict).
    q = run_cx1()  # count 4, drop_next 388.445704, OK
    q.row(arrival, "in", "x", length=1, w=arrival + 10 * MS)
    q.row(arrival + 10 * MS, "timeout", length=1, w=arrival + 110 * MS)
    now = arrival + 110 * MS
    q.row(now, "timeout", drops={"x": 110 * MS}, length=0, w=None)
    q.assert_codel(mode="DROPPING", count=count, drop_next=now + gap)


def test_lifo_catch_up_counts_served_request() -> None:
    # C8/C9: lifo evaluates the rest with floor min_len - 1, so a late out may
    # drop down to min_len - 1 requests besides the one it serves; then C8
    # resets to OK because fewer than min_len are left.
    q = Trace(CodelQueue(target=0.01, interval=0.1, out="lifo", min_len=1))
    q.row(0, "in", "a", length=1, w=None)
    q.row(0, "in", "bcde", length=5, w=10 * MS)
    q.row(10 * MS, "timeout", length=5, w=110 * MS)
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=4, w=210 * MS)
    drops = {name: 500 * MS for name in "bcd"}
    q.row(500 * MS, "out", drops=drops, result=("e", 500 * MS), length=0, w=None)
    q.assert_codel(mode="OK", count=4, drop_next=388_445_704, check_at=500 * MS)


def test_max_len_zero_drops_every_arrival() -> None:
    # Q10: max_len 0 means tail drop whatever `drop` says.
    q = Trace(CodelQueue(target=0.01, interval=0.1, drop="head", max_len=0))
    q.row(0, "in", "a", drops={"a": 0}, length=0, w=None)


def test_min_len_counts_served_request_fifo() -> None:
    # C9: a fifo out drops while len > min_len counting the served request.
    q = Trace(CodelQueue(target=0.01, interval=0.1, min_len=2))
    q.row(0, "in", "ab", length=2, w=None)  # len <= min_len: no check
    q.row(0, "in", "cd", length=4, w=10 * MS)
    q.row(10 * MS, "timeout", length=4, w=110 * MS)
    q.row(110 * MS, "timeout", drops={"a": 110 * MS}, length=3, w=210 * MS)
    # b dropped on the out path; c: m == min_len, so c is served and we reset.
    q.row(210 * MS, "out", drops={"b": 210 * MS}, result=("c", 210 * MS), length=1, w=None)
    q.assert_codel(mode="OK", count=1)


# ---------------------------------------------------------------------------
# Reference model (P15): the pseudocode of C3-C12 over a plain list
# ---------------------------------------------------------------------------


@attrs.frozen
class Params:
    """The parameters of one configuration, durations in seconds as users give them."""

    target: float
    interval: float
    out: str
    drop: str
    min_len: int
    max_len: int | None

    def policy(self) -> CodelQueue:
        return CodelQueue(
            target=self.target,
            interval=self.interval,
            out=self.out,
            drop=self.drop,
            min_len=self.min_len,
            max_len=self.max_len,
        )


class Model:
    """CodelQueue as the spec writes it, kept as literal as possible."""

    def __init__(self, params: Params, requests: list[Request], now: int) -> None:
        self.q: list[Request] = list(requests)
        self.now = now
        self.dropped: list[tuple[Request, str]] = []
        self.take(params)
        self.mode = "OK"
        self.first_drop: int | None = None
        self.count = 0
        self.drop_next = now
        self.check_at = now

    def take(self, p: Params) -> None:
        # §0: ns = round(seconds * 1e9)
        self.target = round(p.target * 1_000_000_000)
        self.interval = round(p.interval * 1_000_000_000)
        self.out = p.out
        self.drop = p.drop
        self.min_len = p.min_len
        self.max_len = p.max_len

    # C3
    def fast(self, r: Request) -> bool:
        return r.send_time + self.target > self.now

    def step(self, c: int) -> int:
        return int(self.interval / math.sqrt(c))

    def wake(self) -> int | None:
        return self.check_at if len(self.q) > self.min_len else None

    def reset(self) -> None:
        self.mode = "OK"
        self.check_at = self.now

    def go_slow(self) -> None:
        self.mode = "SLOW"
        self.first_drop = self.check_at = self.now + self.interval

    def start_drops(self) -> None:
        if self.count > 2 and self.now - self.drop_next < 8 * self.interval:
            self.count -= 2
        else:
            self.count = 1
        self.mode = "DROPPING"
        self.drop_next = self.check_at = self.now + self.step(self.count)

    def advance(self) -> None:
        self.count += 1
        self.drop_next += self.step(self.count)
        self.check_at = self.drop_next

    def drop_it(self, r: Request, why: str = "codel") -> None:
        self.dropped.append((r, why))

    # Q11, Q12
    def admit(self, r: Request) -> None:
        if self.max_len is not None and len(self.q) == self.max_len:
            if self.drop == "tail" or self.max_len == 0:
                self.drop_it(r, "max_len")
                return
            self.drop_it(self.q.pop(0), "max_len")
        self.q.append(r)

    def trim(self) -> None:
        if self.max_len is None:
            return
        while len(self.q) > self.max_len:
            if self.drop == "head" or self.max_len == 0:
                self.drop_it(self.q.pop(0), "max_len")
            else:
                self.drop_it(self.q.pop(), "max_len")

    # C5
    def check(self) -> int | None:
        if len(self.q) > self.min_len and self.check_at <= self.now:
            self.evaluate(self.min_len)
        return self.wake()

    def evaluate(self, floor: int) -> None:
        h = self.q[0]
        if self.fast(h):
            self.check_at = h.send_time + self.target
            return
        if self.mode == "OK":
            self.go_slow()
            return
        if self.mode == "SLOW":
            self.drop_it(self.q.pop(0))
            self.start_drops()
            return
        self.drop_it(self.q.pop(0))
        self.advance()
        while len(self.q) > floor and self.drop_next <= self.now:
            if self.fast(self.q[0]):
                self.check_at = self.q[0].send_time + self.target
                return
            self.drop_it(self.q.pop(0))
            self.advance()

    # operations
    def init(self) -> int | None:  # C11
        self.trim()
        return self.check()

    def handle_in(self, r: Request) -> int | None:  # C6
        self.admit(r)
        return self.check()

    def handle_timeout(self) -> int | None:
        return self.check()

    def handle_cancel(self, tag: object) -> tuple[int, int | None]:  # C10
        kept = [r for r in self.q if r.tag != tag]
        n = len(self.q) - len(kept)
        self.q = kept
        return n, self.check()

    def remove(self, r: Request) -> int | None:  # C10
        if r in self.q:
            self.q.remove(r)
        return self.check()

    def config_change(self, p: Params) -> int | None:  # C12
        self.take(p)
        self.trim()
        limit = self.now + self.interval
        if self.mode == "SLOW" and self.first_drop is not None and self.first_drop > limit:
            self.first_drop = self.check_at = limit
        if self.drop_next > limit:
            self.drop_next = limit
            if self.mode == "DROPPING":
                self.check_at = limit
        if self.mode == "OK":
            self.check_at = self.now
        return self.check()

    def handle_out(self) -> tuple[Request, int | None] | None:
        got = self.fifo() if self.out == "fifo" else self.lifo()
        if got is None:
            return None
        return got, self.wake()

    def fq_out(self) -> tuple[Request | None, int | None]:  # C13
        got = self.handle_out()
        if got is None:
            return None, max(self.drop_next + 8 * self.interval, self.now)
        return got

    def fifo(self) -> Request | None:  # C7
        if not self.q:
            if self.mode != "OK":
                self.reset()
            return None
        x = self.q.pop(0)
        if len(self.q) < self.min_len:
            self.reset()
            return x
        if self.fast(x):
            self.mode = "OK"
            self.check_at = x.send_time + self.target
            return x
        if self.check_at > self.now:
            return x
        if self.mode == "OK":
            self.go_slow()
            return x
        first = self.mode == "SLOW"
        self.drop_it(x)
        if first:
            self.start_drops()
        while True:
            if not self.q:
                self.reset()
                return None
            m = len(self.q)
            y = self.q.pop(0)
            if m == self.min_len:
                self.reset()
                return y
            if self.fast(y):
                self.mode = "OK"
                self.check_at = y.send_time + self.target
                return y
            if first:
                return y
            self.advance()
            if self.drop_next > self.now:
                return y
            self.drop_it(y)

    def lifo(self) -> Request | None:  # C8
        if not self.q:
            if self.mode != "OK":
                self.reset()
            return None
        x = self.q.pop()
        r = len(self.q)
        if r < self.min_len:
            self.reset()
            return x
        if self.check_at > self.now:
            return x
        if r == 0:
            if self.fast(x):
                self.reset()
                return x
            return self.last(x)
        self.evaluate(max(self.min_len - 1, 0))
        m = len(self.q)
        if m == 0 and self.min_len == 0:
            return self.last(x)
        if m < self.min_len:
            self.reset()
        return x

    def last(self, x: Request) -> Request | None:
        if self.mode == "OK":
            self.go_slow()
            return x
        if self.mode == "DROPPING" and self.drop_next <= self.now and not self.fast(x):
            self.drop_it(x)
            self.advance()
            self.reset()
            return None
        if self.mode == "SLOW" and self.first_drop is not None and self.first_drop <= self.now:
            self.drop_it(x)
            self.start_drops()
            self.reset()
            return None
        return x


# ---------------------------------------------------------------------------
# State machine: the policy and the model side by side
# ---------------------------------------------------------------------------

TAGS = st.sampled_from(["x", "y", "z"])
# Time passing before an operation, in thousandths of the current interval:
# mostly none, sometimes a late operation that finds the drop schedule behind;
# -1 means "until the last W", the moment the policy asked to be called.
WAIT = st.sampled_from([0, 0, -1, -1, 300, 1000, 2500])


@st.composite
def params_strategy(draw: st.DrawFn) -> Params:
    target = draw(
        st.one_of(st.sampled_from([0, 1, 2, 3, 5]).map(lambda v: v * MS), st.integers(0, 6 * MS))
    )
    interval = draw(
        st.one_of(st.sampled_from([1, 2, 5, 10]).map(lambda v: v * MS), st.integers(1, 12 * MS))
    )
    min_len = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
    # Mostly unbounded: short limits empty the queue before CoDel has anything to do.
    limit = draw(st.sampled_from(["none", "none", "none", "bounded", "bounded", "zero"]))
    max_len = None
    if limit == "bounded" or (limit == "zero" and min_len > 0):
        max_len = draw(st.integers(max(min_len, 1), min_len + 6))
    elif limit == "zero":
        max_len = 0  # Q10
    return Params(
        target=target / 1e9,
        interval=interval / 1e9,
        out=draw(st.sampled_from(["fifo", "lifo"])),
        drop=draw(st.sampled_from(["head", "tail"])),
        min_len=min_len,
        max_len=max_len,
    )


def _trim(queue: list[Request], p: Params) -> tuple[set[Request], list[Request]]:
    """Q12 as the harness sees it: (requests trimmed away, requests kept)."""
    if p.max_len is None or len(queue) <= p.max_len:
        return set(), list(queue)
    excess = len(queue) - p.max_len
    if p.drop == "head" or p.max_len == 0:
        return set(queue[:excess]), queue[excess:]
    return set(queue[-excess:]), queue[:-excess]


class CodelMachine(RuleBasedStateMachine):
    """Every operation runs on the real state and on Model; results must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.impl_drops: list[tuple[Request, int]] = []
        self.given: list[Request] = []
        self.outcome: dict[int, str] = {}  # id(request) -> how it left
        self.counter = 0

    def _on_drop(self, request: Request, now: int) -> None:
        self.impl_drops.append((request, now))

    def _new_request(self, send_time: int, tag: str) -> Request:
        self.counter += 1
        request = Request(send_time, self.counter, tag)
        self.given.append(request)
        self.last_send = send_time
        return request

    @initialize(
        params=params_strategy(),
        start=st.integers(0, 30 * MS),
        ages=st.lists(st.integers(0, 30 * MS), max_size=6),
        tags=st.lists(TAGS, min_size=6, max_size=6),
    )
    def setup(self, params: Params, start: int, ages: list[int], tags: list[str]) -> None:
        self.now = 30 * MS + start
        self.last_send = 0
        self.params = params
        sends = sorted(self.now - age for age in ages)
        requests = [self._new_request(t, tag) for t, tag in zip(sends, tags, strict=False)]
        self.model = Model(params, requests, self.now)
        self.state, w = params.policy().init(list(requests), self.now, self._on_drop)
        model_w = self.model.init()
        self.last_w: int | None = None
        trimmed, before = _trim(requests, params)
        self._settle("init", before, trimmed, None, w, model_w)

    # -- the comparison and the properties ------------------------------------

    def _settle(
        self,
        op: str,
        before: list[Request],
        max_len_drops: set[Request],
        served: Request | None,
        w: int | None,
        model_w: int | None,
    ) -> None:
        """Compare with the model and check P1-P6, P8-P10 after one operation.

        ``before`` is the queue the time-based rules work on: after admission
        (handle_in), trimming (config_change), cancel or remove.
        """
        now = self.now
        model = self.model
        state: Any = self.state
        drops, self.impl_drops = self.impl_drops, []
        model_drops, model.dropped = model.dropped, []
        dropped = [r for r, _ in drops]
        # Q4, P4: dropped once, at this operation's now, sojourn >= 0.
        assert all(when == now for _, when in drops)
        assert all(now - r.send_time >= 0 for r in dropped)
        assert len(set(map(id, dropped))) == len(dropped)
        # Q13: compare drops as sets, with the model.
        assert set(map(id, dropped)) == {id(r) for r, _ in model_drops}
        assert {id(r) for r, why in model_drops if why == "max_len"} == set(map(id, max_len_drops))
        # Results, len, W, send_time, order (P2, P3, P11) and the CoDel variables.
        assert w == model_w
        queue = list(state._queue)
        assert queue == model.q
        assert [r.value for r in queue] == sorted(r.value for r in queue)  # P3
        assert len(self.state) == len(model.q)
        assert self.state.send_time() == (model.q[0].send_time if model.q else None)  # P11
        assert state._mode.name == model.mode
        assert state._count == model.count
        assert state._drop_next == model.drop_next
        assert state._check_at == model.check_at
        if model.mode == "SLOW":
            assert state._first_drop == model.first_drop
        p = self.params
        if p.max_len is not None:
            assert len(queue) <= p.max_len  # P2
        # P1: every request leaves exactly once.
        for r in dropped:
            assert id(r) not in self.outcome
            self.outcome[id(r)] = "dropped"
        if served is not None:
            assert id(served) not in self.outcome
            self.outcome[id(served)] = "served"
        assert all(id(r) not in self.outcome for r in queue)
        assert len(self.outcome) + len(queue) == len(self.given)
        # Time-based drops.
        timed = [r for r in dropped if r not in max_len_drops]
        ids = {id(r) for r in timed}
        n = len(timed)
        # P5: time-based drops take the head (a prefix of the queue); fifo
        # serves the next request after them, lifo the tail.
        assert ids == {id(r) for r in before[:n]}
        if served is not None:
            if p.out == "fifo" and op in ("out", "fq_out"):
                assert before[n] is served
            elif op in ("out", "fq_out"):
                assert before[-1] is served
        # P6: time-based drops never go below min_len (an out counts its request).
        if timed:
            assert len(queue) + (served is not None) >= p.min_len
        # P8, C15: no CoDel drop of a fast request.
        assert all(now - r.send_time >= model.target for r in timed)
        # P9: no time-based drop before the last W, except on config_change.
        if op != "config_change" and self.last_w is not None and now < self.last_w:
            assert not timed
        # P10: W is None or >= now; None iff len <= min_len.
        assert w is None or w >= now
        assert (w is None) == (len(queue) <= p.min_len)
        self.last_w = w

    # -- rules -------------------------------------------------------------

    def _wait(self, wait: int) -> None:
        """Let time pass: ``wait`` thousandths of the current interval, or up to the last W."""
        if wait >= 0:
            self.now += self.model.interval * wait // 1000
        elif self.last_w is not None:
            self.now = max(self.now, self.last_w)

    @rule(
        wait=st.one_of(WAIT, st.integers(0, 3000)),
        then_timeout=st.booleans(),
    )
    def advance(self, wait: int, then_timeout: bool) -> None:
        """Time passes (0..3 intervals, or to the last W); maybe the host's timer fires."""
        self._wait(wait)
        if then_timeout:
            self._timeout()

    @rule(
        wait=WAIT,
        arrivals=st.lists(
            st.tuples(st.one_of(st.just(0), st.integers(0, 15 * MS)), TAGS), min_size=1, max_size=3
        ),
    )
    def enqueue(self, wait: int, arrivals: list[tuple[int, str]]) -> None:
        """After ``wait``, a burst of arrivals, each sent ``lag`` ns earlier (Q2)."""
        self._wait(wait)
        for lag, tag in arrivals:
            self._enqueue_one(lag, tag)

    def _enqueue_one(self, lag: int, tag: str) -> None:
        request = self._new_request(max(self.last_send, self.now - lag), tag)
        before = list(self.state._queue)
        p = self.params
        max_len_drops: set[Request] = set()
        if p.max_len is not None and len(before) == p.max_len:
            if p.drop == "head" and p.max_len != 0:
                max_len_drops = {before[0]}
                before = before[1:] + [request]
            else:
                max_len_drops = {request}
        else:
            before = before + [request]
        self.model.now = self.now
        model_w = self.model.handle_in(request)
        w = self.state.handle_in(request, self.now)
        self._settle("in", before, max_len_drops, None, w, model_w)

    def _out(self, op: str) -> None:
        before = list(self.state._queue)
        self.model.now = self.now
        if op == "out":
            got = self.state.handle_out(self.now)
            expected = self.model.handle_out()
            assert (got is None) == (expected is None)
            if got is None:
                served, w, model_w = None, None, None
            else:
                assert expected is not None
                served, w = got
                assert served is expected[0]
                model_w = expected[1]
        else:
            fq_got = self.state.fq_out(self.now)
            fq_expected = self.model.fq_out()
            assert fq_got[0] is fq_expected[0]
            assert fq_got[1] == fq_expected[1]  # W, or C13 remove_time
            served = fq_got[0]
            if served is None:
                assert fq_got[1] is not None and fq_got[1] >= self.now
                w = model_w = None
            else:
                w, model_w = fq_got[1], fq_expected[1]
        self._settle(op, before, set(), served, w, model_w)

    @rule(wait=WAIT)
    def dequeue(self, wait: int) -> None:
        self._wait(wait)
        self._out("out")

    @rule(wait=WAIT)
    def fair_dequeue(self, wait: int) -> None:
        self._wait(wait)
        self._out("fq_out")

    def _timeout(self) -> None:
        before = list(self.state._queue)
        self.model.now = self.now
        model_w = self.model.handle_timeout()
        w = self.state.handle_timeout(self.now)
        self._settle("timeout", before, set(), None, w, model_w)

    @rule(by_tag=st.booleans(), tag=TAGS, index=st.integers(0, 10_000), known=st.booleans())
    def leave(self, by_tag: bool, tag: str, index: int, known: bool) -> None:
        """Requests leave unanswered: cancel by tag (``known``: through
        ``cancel_requests`` given every request made), or trio cancellation (remove)."""
        if by_tag:
            self._cancel(tag, known)
        elif self.given:
            self._remove(index)

    def _cancel(self, tag: str, known: bool) -> None:
        before = [r for r in self.state._queue if r.tag != tag]
        cancelled = [r for r in self.state._queue if r.tag == tag]
        self.model.now = self.now
        model_n, model_w = self.model.handle_cancel(tag)
        if known:
            n, w = self.state.cancel_requests(tag, self.given, self.now)
        else:
            n, w = self.state.handle_cancel(tag, self.now)
        assert n == model_n == len(cancelled)  # P12
        for r in cancelled:
            assert id(r) not in self.outcome
            self.outcome[id(r)] = "cancelled"
        self._settle("cancel", before, set(), None, w, model_w)

    def _remove(self, index: int) -> None:
        request = self.given[-1 - index % len(self.given)]
        queued = list(self.state._queue)
        before = [r for r in queued if r is not request]
        if len(before) < len(queued):
            self.outcome[id(request)] = "removed"
        self.model.now = self.now
        model_w = self.model.remove(request)
        w = self.state.remove(request, self.now)
        self._settle("remove", before, set(), None, w, model_w)

    @rule(params=params_strategy())
    def config_change(self, params: Params) -> None:
        before = list(self.state._queue)
        max_len_drops, before = _trim(before, params)
        self.params = params
        self.model.now = self.now
        model_w = self.model.config_change(params)
        w = self.state.config_change(params.policy(), self.now)
        self._settle("config_change", before, max_len_drops, None, w, model_w)

    @invariant()
    def reads_have_no_side_effects(self) -> None:
        # P11: len() and send_time() change nothing, CoDel variables included.
        state: Any = self.state
        snapshot = repr(state), list(state._queue)
        assert len(state) == len(state)
        assert state.send_time() == state.send_time()
        assert (repr(state), list(state._queue)) == snapshot

    def teardown(self) -> None:
        if not hasattr(self, "state"):
            return
        rest = self.state.terminate()
        assert rest == self.model.q  # P3: oldest first
        assert len(self.outcome) + len(rest) == len(self.given)  # P1


TestCodelStateMachine = CodelMachine.TestCase
TestCodelStateMachine.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, derandomize=True
)


# ---------------------------------------------------------------------------
# Validation (C1, Q9) and value semantics (api.md rule 4)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"target": -1}, ValueError, "target"),
        ({"target": None}, TypeError, "target"),
        ({"target": "1"}, TypeError, "target"),
        ({"target": True}, TypeError, "target"),
        ({"target": math.nan}, ValueError, "target"),
        ({"target": math.inf}, ValueError, "target"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": 1e-12}, ValueError, "interval"),
        ({"interval": -1}, ValueError, "interval"),
        ({"interval": None}, TypeError, "interval"),
        ({"out": "sideways"}, ValueError, "out"),
        ({"out": "adaptive"}, ValueError, "out"),
        ({"out": 1}, TypeError, "out"),
        ({"drop": "middle"}, ValueError, "drop"),
        ({"drop": None}, TypeError, "drop"),
        ({"min_len": -1}, ValueError, "min_len"),
        ({"min_len": True}, TypeError, "min_len"),
        ({"min_len": 1.0}, TypeError, "min_len"),
        ({"min_len": None}, TypeError, "min_len"),
        ({"max_len": -1}, ValueError, "max_len"),
        ({"max_len": False}, TypeError, "max_len"),
        ({"max_len": 2.5}, TypeError, "max_len"),
        ({"min_len": 3, "max_len": 2}, ValueError, "max_len"),
    ],
)
def test_bad_parameters(kwargs: dict[str, Any], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        CodelQueue(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"target": 0},
        {"interval": 1e-9},
        {"min_len": 2, "max_len": 2},
        {"max_len": 0},
        {"out": "lifo", "drop": "head"},
    ],
)
def test_good_parameters(kwargs: dict[str, Any]) -> None:
    CodelQueue(**kwargs)


def test_defaults_repr_equality() -> None:
    policy = CodelQueue()
    assert (policy.target, policy.interval, policy.out, policy.drop) == (0.1, 1.0, "fifo", "tail")
    assert (policy.min_len, policy.max_len) == (0, None)
    text = repr(CodelQueue(target=0.05, interval=0.5, out="lifo", min_len=1, max_len=9))
    for part in ("CodelQueue(", "target=0.05", "interval=0.5", "out='lifo'", "min_len=1"):
        assert part in text
    assert "max_len=9" in text
    assert CodelQueue(target=0.05) == CodelQueue(target=0.05)
    assert hash(CodelQueue(target=0.05)) == hash(CodelQueue(target=0.05))
    assert CodelQueue(target=0.05) != CodelQueue(target=0.06)
    assert CodelQueueDirect is CodelQueue
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.target = 1.0  # type: ignore[misc]


def test_policy_is_reusable() -> None:
    # api.md rule 4: one configuration object, several independent states.
    policy = CodelQueue(target=0.01, interval=0.1)
    a, _ = policy.init([], 0, lambda r, now: None)
    b, _ = policy.init([], 0, lambda r, now: None)
    a.handle_in(Request(0), 0)
    assert (len(a), len(b)) == (1, 0)


def _names(requests: Iterable[Request]) -> list[Any]:
    return [r.value for r in requests]


def test_cancel_and_remove_keep_mode() -> None:
    # C10: remove, then check; neither changes the mode by itself.
    q = Trace(CodelQueue(target=0.01, interval=0.1))
    q.row(0, "in", "abc", length=3, w=10 * MS)
    q.row(10 * MS, "timeout", length=3, w=110 * MS)
    n, w = q.state.handle_cancel(None, 20 * MS)
    assert (n, w) == (3, None)
    q.assert_codel(mode="SLOW")
    q.row(30 * MS, "in", "d", length=1, w=110 * MS)
    assert q.state.remove(q.requests["d"], 40 * MS) is None
    assert q.state.remove(q.requests["d"], 40 * MS) is None  # not queued: no-op
    assert _names(q.state.terminate()) == []
