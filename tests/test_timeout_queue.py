"""TimeoutQueue (queues.md §3): worked examples, a model-based state machine, validation."""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from queue_harness import (
    EMPTY,
    DropRecorder,
    SingleQueueMachine,
    Trace,
    drop_queues,
    ms,
    timeout_queues,
)

from sbroker.queues import DropQueue, QueuePolicy, QueueState, Request, TimeoutQueue

NO_DROPS: dict[str, int] = {}

# --------------------------------------------------------------------------
# Worked examples, row by row: (drops {name: sojourn ms}, out result, len, W ms)


def test_example_t_x1_min_len_protects_the_last_request() -> None:
    q = Trace(TimeoutQueue(timeout=0.1, min_len=1))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)  # T7: len <= min_len
    assert q.in_(50, "b") == (NO_DROPS, None, 2, 100)  # T7: a's expiry
    assert q.in_(60, "c") == (NO_DROPS, None, 3, 100)
    assert q.timeout(100) == ({"a": 100}, None, 2, 150)  # T2: exactly timeout counts
    assert q.timeout(150) == ({"b": 100}, None, 1, None)  # T3 stops at min_len
    assert q.out(400) == (NO_DROPS, ("c", 340), 0, None)  # T5: fifo serves expired head


def test_example_t_x2_lifo() -> None:
    q = Trace(TimeoutQueue(timeout=0.1, out="lifo"))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, 100)
    assert q.in_(80, "b") == (NO_DROPS, None, 2, 100)
    # §0: the driver's timer was late; T5 drops the expired head, then serves the tail.
    assert q.out(120) == ({"a": 120}, ("b", 40), 0, None)
    assert q.in_(130, "c") == (NO_DROPS, None, 1, 230)
    assert q.in_(140, "d") == (NO_DROPS, None, 2, 230)
    # T5: with min_len=0 and everything expired, all are dropped: EMPTY.
    assert q.out(300) == ({"c": 170, "d": 160}, EMPTY, 0, None)


def test_example_t_x2_min_len_1_variant_by_arrivals() -> None:
    q = Trace(TimeoutQueue(timeout=0.1, out="lifo", min_len=1))
    assert q.in_(130, "c") == (NO_DROPS, None, 1, None)
    assert q.in_(140, "d") == (NO_DROPS, None, 2, 230)
    assert q.in_(145, "e") == (NO_DROPS, None, 3, 230)
    # T5: drop heads until len == min_len, then serve the newest although expired.
    assert q.out(300) == ({"c": 170, "d": 160}, ("e", 155), 0, None)


def test_example_t_x2_min_len_1_variant_by_init() -> None:
    # "A fresh TimeoutQueue holding c (sent 130), d (140) and e (145)".
    policy = TimeoutQueue(timeout=0.1, out="lifo", min_len=1)
    q = Trace(policy, t=145, held=[("c", 130), ("d", 140), ("e", 145)])
    assert q.init_result == (NO_DROPS, None, 3, 230)
    assert q.out(300) == ({"c": 170, "d": 160}, ("e", 155), 0, None)


def test_example_t_x3_max_len_head_drop_and_min_len() -> None:
    q = Trace(TimeoutQueue(timeout=0.1, out="lifo", min_len=2, max_len=3, drop="head"))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)
    assert q.in_(10, "b") == (NO_DROPS, None, 2, None)
    assert q.in_(20, "c") == (NO_DROPS, None, 3, 100)
    # Q11 head drop (ignores min_len, P6); T7 W is b's expiry: 110 (N4: Erlang says 100).
    assert q.in_(30, "d") == ({"a": 30}, None, 3, 110)
    assert q.timeout(110) == ({"b": 100}, None, 2, None)
    # T4: the arrival makes len 3 > min_len, so the expired c goes.
    assert q.in_(200, "e") == ({"c": 180}, None, 2, None)
    assert q.out(200) == (NO_DROPS, ("e", 0), 1, None)
    assert q.out(201) == (NO_DROPS, ("d", 171), 0, None)


# --------------------------------------------------------------------------
# Single rules


def test_timeout_is_converted_once_to_ns() -> None:
    # §0: timeout=0.1 s is 100 000 000 ns.
    q = Trace(TimeoutQueue(timeout=0.1))
    assert q.in_(0, "a")[3] == 100
    assert q.state.handle_timeout(ms(100) - 1) == ms(100)  # T2: 1 ns short: not expired
    assert len(q.state) == 1


def test_timeout_none_never_drops() -> None:
    q = Trace(TimeoutQueue(timeout=None))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)  # T7
    assert q.timeout(10**9) == (NO_DROPS, None, 1, None)
    assert q.out(10**10) == (NO_DROPS, ("a", 10**10), 0, None)


def test_timeout_zero_expires_on_arrival() -> None:
    # T9: the queue never holds more than min_len after an operation.
    q = Trace(TimeoutQueue(timeout=0, min_len=1))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)
    assert q.in_(0, "b") == ({"a": 0}, None, 1, None)
    assert q.out(5) == (NO_DROPS, ("b", 5), 0, None)
    q = Trace(TimeoutQueue(timeout=0))
    assert q.in_(0, "a") == ({"a": 0}, None, 0, None)


def test_max_len_zero_drops_every_arrival_even_with_head_drop() -> None:
    # Q10
    q = Trace(TimeoutQueue(max_len=0, drop="head"))
    assert q.in_(0, "a") == ({"a": 0}, None, 0, None)
    assert q.in_(1, "b", sent=0.5) == ({"b": 0.5}, None, 0, None)  # Q11: sojourn now - send


def test_tail_drop_at_max_len_still_runs_the_check() -> None:
    # Q11: the new request is dropped, the check runs on the unchanged queue.
    q = Trace(TimeoutQueue(timeout=0.1, max_len=2))
    q.in_(0, "a")
    q.in_(50, "b")
    assert q.in_(100, "c") == ({"c": 0, "a": 100}, None, 1, 150)


def test_cancel_and_remove_run_the_check() -> None:
    # T6, Q8: a cancel or a removal can drop other requests.
    q = Trace(TimeoutQueue(timeout=0.1, min_len=1))
    q.in_(0, "a")
    q.in_(10, "b")
    q.in_(20, "c")
    count, wake = q.state.handle_cancel("c", ms(200))
    assert (count, wake) == (1, None)
    assert [(r.value, now) for r, now in q.recorder.take()] == [("a", ms(200))]
    assert len(q.state) == 1
    q.in_(300, "d")  # T4 drops b
    assert q.state.remove(q.requests["d"], ms(300)) is None
    assert q.recorder.take() == []
    assert q.state.handle_cancel("nobody", ms(300)) == (0, None)


def test_config_change_trims_then_checks() -> None:
    # T6: Q12 with the new max_len, then T3 with the new timeout and min_len.
    q = Trace(TimeoutQueue(timeout=None))
    for t, name in enumerate("abcde"):
        q.in_(t * 10, name)
    wake = q.state.config_change(
        TimeoutQueue(timeout=0.025, max_len=4, drop="tail", min_len=1), ms(40)
    )
    dropped = {r.value: now - r.send_time for r, now in q.recorder.take()}
    assert dropped == {"e": 0, "a": ms(40), "b": ms(30)}  # e by max_len, a, b expired
    assert wake == ms(20 + 25)
    assert len(q.state) == 2 and q.state.send_time() == ms(20)


def test_fq_out_on_empty_reports_now() -> None:
    # T8
    state, wake = TimeoutQueue(timeout=0.1).init([], 7, DropRecorder())
    assert wake is None
    assert state.fq_out(42) == (None, 42)


@pytest.mark.parametrize("policy", [TimeoutQueue(out="lifo"), DropQueue(out="lifo")])
def test_terminate_hands_over_oldest_first_unanswered(policy: QueuePolicy) -> None:
    # Q5, P3: whatever `out` is, terminate hands over oldest first, answering none.
    recorder = DropRecorder()
    requests = [Request(t, value=t) for t in (1, 2, 3)]
    state, _ = policy.init(requests, 3, recorder)
    assert state.terminate() == requests
    assert recorder.calls == []


# --------------------------------------------------------------------------
# Model-based state machine (P1-P7, P9-P12, P15)


class TimeoutQueueMachine(SingleQueueMachine):
    start = timeout_queues()
    # Re-init mostly keeps the class; one time in four it switches (Q7).
    switch = st.integers(0, 3).flatmap(lambda n: drop_queues() if n == 0 else timeout_queues())


TestTimeoutQueueMachine = TimeoutQueueMachine.TestCase
TestTimeoutQueueMachine.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None, derandomize=True
)


# --------------------------------------------------------------------------
# Configuration values (api.md rules 4 and 5; T1, Q9)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"out": "sideways"}, ValueError, "out"),
        ({"out": 1}, TypeError, "out"),
        ({"drop": "x"}, ValueError, "drop"),
        ({"drop": None}, TypeError, "drop"),
        ({"max_len": -1}, ValueError, "max_len"),
        ({"max_len": 1.5}, TypeError, "max_len"),
        ({"max_len": True}, TypeError, "max_len"),
        ({"min_len": -1}, ValueError, "min_len"),
        ({"min_len": 1.0}, TypeError, "min_len"),
        ({"min_len": False}, TypeError, "min_len"),
        ({"min_len": None}, TypeError, "min_len"),
        ({"min_len": 3, "max_len": 2}, ValueError, "max_len"),
        ({"min_len": 1, "max_len": 0}, ValueError, "max_len"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": -0.5}, ValueError, "timeout"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"timeout": "1"}, TypeError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        TimeoutQueue(**kwargs)  # type: ignore[arg-type]


def test_valid_edge_arguments() -> None:
    TimeoutQueue(timeout=0, min_len=0, max_len=0)
    TimeoutQueue(timeout=None, min_len=2, max_len=2)
    TimeoutQueue(timeout=1, out="lifo", drop="head", min_len=5, max_len=None)


def test_defaults() -> None:
    # T1, Q9, N1: timeout 5 s, fifo, tail drop, min_len 0, unbounded.
    policy = TimeoutQueue()
    assert (policy.timeout, policy.out, policy.drop, policy.min_len, policy.max_len) == (
        5.0,
        "fifo",
        "tail",
        0,
        None,
    )


def test_repr_shows_parameters() -> None:
    text = repr(TimeoutQueue(timeout=0.25, out="lifo", drop="head", min_len=1, max_len=7))
    assert text.startswith("TimeoutQueue(")
    for part in ("timeout=0.25", "out='lifo'", "drop='head'", "min_len=1", "max_len=7"):
        assert part in text


def test_equal_configs_are_equal_and_hashable() -> None:
    a = TimeoutQueue(timeout=0.5, max_len=3)
    b = TimeoutQueue(timeout=0.5, max_len=3)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, TimeoutQueue(timeout=0.5, max_len=4)}) == 2
    assert a != TimeoutQueue(timeout=0.5, max_len=3, out="lifo")
    assert TimeoutQueue() != DropQueue()


def test_config_is_immutable() -> None:
    policy = TimeoutQueue()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.timeout = 1.0  # type: ignore[misc]
    assert attrs.evolve(policy, timeout=1.0).timeout == 1.0
    assert policy.timeout == 5.0


def test_one_config_creates_independent_states() -> None:
    policy = TimeoutQueue(timeout=0.1, max_len=1)
    assert isinstance(policy, QueuePolicy)
    first_drops, second_drops = DropRecorder(), DropRecorder()
    first, _ = policy.init([], 0, first_drops)
    second, _ = policy.init([], 0, second_drops)
    assert isinstance(first, QueueState) and first is not second
    a, b = Request(0, "a"), Request(0, "b")
    assert first.handle_in(a, 0) == ms(100)
    assert len(first) == 1 and len(second) == 0
    assert second.handle_in(b, 0) == ms(100)  # not refused by first's max_len
    assert first_drops.calls == [] and second_drops.calls == []
    assert second.handle_out(ms(50)) == (b, None)
    assert len(first) == 1 and first.send_time() == 0
    assert policy == TimeoutQueue(timeout=0.1, max_len=1)
