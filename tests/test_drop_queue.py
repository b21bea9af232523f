"""DropQueue (queues.md §2): worked example, a model-based state machine, validation."""

from __future__ import annotations

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
# Worked example D-X1, row by row: (drops {name: sojourn ms}, out result, len, W ms).
# The spec gives no times; arrivals are 10 ms apart, outs follow.


def test_example_d_x1_head_drop() -> None:
    q = Trace(DropQueue(drop="head", max_len=2, out="lifo"))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)  # D2: W is always None
    assert q.in_(10, "b") == (NO_DROPS, None, 2, None)
    assert q.in_(20, "c") == ({"a": 20}, None, 2, None)  # Q11: head dropped, c appended
    assert q.out(30) == (NO_DROPS, ("c", 10), 1, None)  # D3: lifo serves the tail
    assert q.out(40) == (NO_DROPS, ("b", 30), 0, None)
    assert q.out(50) == (NO_DROPS, EMPTY, 0, None)


def test_example_d_x1_tail_drop() -> None:
    q = Trace(DropQueue(drop="tail", max_len=2, out="lifo"))
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)
    assert q.in_(10, "b") == (NO_DROPS, None, 2, None)
    assert q.in_(20, "c") == ({"c": 0}, None, 2, None)  # Q11: the arrival is dropped
    assert q.out(30) == (NO_DROPS, ("b", 20), 1, None)
    assert q.out(40) == (NO_DROPS, ("a", 40), 0, None)
    assert q.out(50) == (NO_DROPS, EMPTY, 0, None)


# --------------------------------------------------------------------------
# Single rules


def test_fifo_serves_the_head_and_never_times_out() -> None:
    q = Trace(DropQueue())
    assert q.in_(0, "a") == (NO_DROPS, None, 1, None)
    assert q.in_(1, "b") == (NO_DROPS, None, 2, None)
    assert q.timeout(10**9) == (NO_DROPS, None, 2, None)  # D2
    assert q.out(10**9) == (NO_DROPS, ("a", 10**9), 1, None)
    assert q.out(10**9) == (NO_DROPS, ("b", 10**9 - 1), 0, None)


def test_tail_drop_sojourn_is_now_minus_send_time() -> None:
    # Q11: the arrival is dropped with sojourn now - send_time ("usually 0").
    q = Trace(DropQueue(max_len=1))
    q.in_(0, "a")
    assert q.in_(5, "b", sent=3) == ({"b": 2}, None, 1, None)


def test_max_len_zero_drops_every_arrival_even_with_head_drop() -> None:
    # Q10
    for drop in ("head", "tail"):
        q = Trace(DropQueue(max_len=0, drop=drop))
        assert q.in_(0, "a") == ({"a": 0}, None, 0, None)
        assert q.out(1) == (NO_DROPS, EMPTY, 0, None)


@pytest.mark.parametrize(
    ("drop", "kept", "dropped"),
    [("head", ["c", "d"], {"a", "b"}), ("tail", ["a", "b"], {"c", "d"})],
)
def test_init_and_config_change_trim(drop: str, kept: list[str], dropped: set[str]) -> None:
    # D4, Q12: the oldest (head) or the newest (tail) beyond max_len.
    held = [(name, t) for t, name in enumerate("abcd")]
    q = Trace(DropQueue(max_len=2, drop=drop), t=5, held=held)
    assert set(q.init_result[0]) == dropped and q.init_result[2:] == (2, None)
    assert [r.value for r in q.state.terminate()] == kept

    q = Trace(DropQueue(), t=5, held=held)
    assert q.state.config_change(DropQueue(max_len=2, drop=drop, out="lifo"), ms(6)) is None
    assert {r.value for r, _ in q.recorder.take()} == dropped
    assert q.out(7)[1][0] == kept[-1]  # the new `out` applies at once


def test_cancel_and_remove_only_remove() -> None:
    # D3, P12: removed requests are not answered; the count is returned.
    q = Trace(DropQueue())
    for t, (name, tag) in enumerate([("a", "x"), ("b", "y"), ("c", "x")]):
        q.state.handle_in(Request(t, value=name, tag=tag), t)
    assert q.state.handle_cancel("x", 3) == (2, None)
    assert q.state.handle_cancel("x", 3) == (0, None)
    stranger = Request(0, value="z")
    assert q.state.remove(stranger, 4) is None  # not queued: nothing happens
    assert len(q.state) == 1 and q.state.send_time() == 1
    assert q.state.remove(q.state.terminate()[0], 5) is None  # already gone
    assert q.recorder.calls == []


def test_fq_out_on_empty_reports_now() -> None:
    # D5
    state, wake = DropQueue().init([], 3, DropRecorder())
    assert wake is None
    assert state.fq_out(11) == (None, 11)
    state.handle_in(Request(11, "a"), 11)
    request, wake = state.fq_out(12)
    assert (request.value, wake) == ("a", None)


# --------------------------------------------------------------------------
# Model-based state machine (P1-P6, P9-P12, P15); re-init may switch to a
# TimeoutQueue and back (Q7), where the TimeoutQueue rules are checked too.


class DropQueueMachine(SingleQueueMachine):
    start = drop_queues()
    # Re-init mostly keeps the class; one time in four it switches (Q7).
    switch = st.integers(0, 3).flatmap(lambda n: timeout_queues() if n == 0 else drop_queues())


TestDropQueueMachine = DropQueueMachine.TestCase
TestDropQueueMachine.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None, derandomize=True
)


# --------------------------------------------------------------------------
# Configuration values (api.md rules 4 and 5; D1, Q9)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"out": "sideways"}, ValueError, "out"),
        ({"out": "adaptive"}, ValueError, "out"),
        ({"out": None}, TypeError, "out"),
        ({"drop": "x"}, ValueError, "drop"),
        ({"drop": 0}, TypeError, "drop"),
        ({"max_len": -1}, ValueError, "max_len"),
        ({"max_len": 1.5}, TypeError, "max_len"),
        ({"max_len": 2.0}, TypeError, "max_len"),
        ({"max_len": True}, TypeError, "max_len"),
        ({"max_len": "3"}, TypeError, "max_len"),
        ({"min_len": 1}, TypeError, "min_len"),  # D1: DropQueue has no min_len
        ({"timeout": 1}, TypeError, "timeout"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        DropQueue(**kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    # D1, Q9, N1: fifo, tail drop, unbounded.
    policy = DropQueue()
    assert (policy.out, policy.drop, policy.max_len) == ("fifo", "tail", None)
    assert DropQueue(max_len=0).max_len == 0


def test_repr_shows_parameters() -> None:
    text = repr(DropQueue(out="lifo", drop="head", max_len=3))
    assert text.startswith("DropQueue(")
    for part in ("out='lifo'", "drop='head'", "max_len=3"):
        assert part in text


def test_equal_configs_are_equal_and_hashable() -> None:
    a, b = DropQueue(max_len=3, out="lifo"), DropQueue(out="lifo", max_len=3)
    assert a == b and hash(a) == hash(b)
    assert len({a, b, DropQueue(max_len=3)}) == 2
    assert a != DropQueue(max_len=3, out="lifo", drop="head")
    assert DropQueue() != TimeoutQueue(timeout=None)


def test_config_is_immutable() -> None:
    policy = DropQueue()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_len = 1  # type: ignore[misc]
    assert policy.max_len is None


def test_one_config_creates_independent_states() -> None:
    policy = DropQueue(max_len=1)
    assert isinstance(policy, QueuePolicy)
    first_drops, second_drops = DropRecorder(), DropRecorder()
    first, _ = policy.init([], 0, first_drops)
    second, _ = policy.init([], 0, second_drops)
    assert isinstance(first, QueueState) and first is not second
    a, b = Request(0, "a"), Request(0, "b")
    first.handle_in(a, 0)
    second.handle_in(b, 0)  # not refused by first's max_len
    assert first_drops.calls == [] and second_drops.calls == []
    assert second.handle_out(1) == (b, None)
    assert len(first) == 1 and len(second) == 0
    assert first.handle_out(1) == (a, None)
    assert policy == DropQueue(max_len=1)
