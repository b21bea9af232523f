"""Tests of FairQueue (queues.md §5, F1-F12, P13).

Three parts: parameter validation; the worked examples F-X1 and F-X2 row by
row plus focused tests of single rules; and a hypothesis state machine that
drives a real fair-queue state beside a naive reference model written from
F3-F12 (both use the real sub-queue policies: the model is about the fair
layer), checking P1, P2, P3, P13 and F11 along the way.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from fractions import Fraction
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from queue_harness import DropRecorder

from sbroker.queues import DropQueue, QueuePolicy, QueueState, Request, TimeoutQueue
from sbroker.queues.adaptive import AdaptiveQueue
from sbroker.queues.codel import CodelQueue
from sbroker.queues.fair import FairQueue

MS = 1_000_000  # ns per millisecond


def ms(value: int | str) -> int:
    """Milliseconds as written in the spec tables to int ns (exact)."""
    return int(Fraction(value) * MS)


def first(value: Any) -> Hashable:
    return value[0]  # type: ignore[no-any-return]


def first_again(value: Any) -> Hashable:
    """Behaves like :func:`first` but is another object (F12 compares identity)."""
    return value[0]  # type: ignore[no-any-return]


def parity(value: Any) -> Hashable:
    return value[0] % 2  # type: ignore[no-any-return]


def fair_state(policy: FairQueue, requests: Sequence[Request] = (), now: int = 0) -> Any:
    """``policy.init`` with a fresh recorder, returned as ``(state, W, recorder)``."""
    recorder = DropRecorder()
    state, wake = policy.init(requests, now, recorder)
    return state, wake, recorder


# ---------------------------------------------------------------------------
# F1, F2: parameters


def test_defaults() -> None:
    policy = FairQueue()
    assert policy.queue == CodelQueue()
    assert policy.key is None and policy.buckets is None
    assert policy == FairQueue(CodelQueue())
    assert hash(policy) == hash(FairQueue())
    assert "CodelQueue(" in repr(policy) and "buckets=None" in repr(policy)
    assert isinstance(policy, QueuePolicy)
    state, wake, _ = fair_state(policy)
    assert isinstance(state, QueueState)
    assert wake is None and len(state) == 0 and state.send_time() is None


@pytest.mark.parametrize(
    "template",
    [DropQueue(), TimeoutQueue(), CodelQueue(), AdaptiveQueue()],
)
def test_accepts_every_single_queue_template(template: QueuePolicy) -> None:
    assert FairQueue(template).queue is template


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"queue": FairQueue(DropQueue())}, TypeError, "queue"),  # F1
        ({"queue": DropQueue}, TypeError, "queue"),  # the class, not a policy
        ({"queue": None}, TypeError, "queue"),
        ({"queue": "fifo"}, TypeError, "queue"),
        ({"key": 3}, TypeError, "key"),
        ({"key": "value"}, TypeError, "key"),
        ({"buckets": True}, TypeError, "buckets"),
        ({"buckets": 2.0}, TypeError, "buckets"),
        ({"buckets": "2"}, TypeError, "buckets"),
        ({"buckets": 0}, ValueError, "buckets"),
        ({"buckets": -1}, ValueError, "buckets"),
        ({"buckets": 2**32 + 1}, ValueError, "buckets"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any], error: type[Exception], name: str) -> None:
    kwargs.setdefault("queue", DropQueue())
    with pytest.raises(error, match=name):
        FairQueue(**kwargs)


def test_bucket_bounds_and_frozen() -> None:
    assert FairQueue(DropQueue(), buckets=1).buckets == 1
    assert FairQueue(DropQueue(), buckets=2**32).buckets == 2**32
    policy = FairQueue(DropQueue(), key=first)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.buckets = 3  # type: ignore[misc]


def test_config_change_needs_a_fair_queue() -> None:
    state, _, _ = fair_state(FairQueue(DropQueue()))
    with pytest.raises(TypeError):
        state.config_change(DropQueue(), 0)


def test_keys_by_value_and_by_function() -> None:  # F2
    state, _, _ = fair_state(FairQueue(DropQueue()))
    for value in ["a", "b", "a", ("a",)]:
        state.handle_in(Request(0, value), 0)
    assert state._robin_keys() == ["a", "b", ("a",)]
    state, _, _ = fair_state(FairQueue(DropQueue(), key=parity))
    for n in range(5):
        state.handle_in(Request(0, (n,)), 0)
    assert state._robin_keys() == [0, 1]
    assert len(state) == 5
    state, _, _ = fair_state(FairQueue(DropQueue()))
    with pytest.raises(TypeError):  # keys must be hashable; nothing changes
        state.handle_in(Request(0, [1]), 0)
    assert len(state) == 0 and state._robin_keys() == []


def test_buckets_bound_the_sub_queues() -> None:  # F2
    state, _, _ = fair_state(FairQueue(DropQueue(), key=first, buckets=3))
    for n in range(30):
        state.handle_in(Request(0, (f"key{n % 10}", n)), 0)
    assert len(state._robin_keys()) <= 3
    assert all(0 <= key < 3 for key in state._robin_keys())
    served: dict[str, int] = {}
    while (item := state.handle_out(0)) is not None:
        request = item[0]
        bucket = hash(request.value[0]) % 3
        # equal keys share a sub-queue: each key's requests come out in order
        assert served.get(request.value[0], -1) < request.value[1]
        served[request.value[0]] = request.value[1]
        assert bucket in range(3)
    assert len(served) == 10


# ---------------------------------------------------------------------------
# Worked examples


def test_example_f_x1() -> None:
    policy = FairQueue(CodelQueue(target=0.01, interval=0.1), key=first)
    state, wake, drops = fair_state(policy)
    assert wake is None

    def req(t: int, key: str, n: int) -> Request:
        return Request(ms(t), (key, n))

    def out(t: int) -> tuple[Any, int | None]:
        item = state.handle_out(ms(t))
        return ("EMPTY", None) if item is None else (item[0].value, item[1])

    def check(length: int, robin: list[str], parked: dict[str, int]) -> None:
        assert len(state) == length
        assert state._robin_keys() == robin
        assert state._parked_until() == {k: ms(t) for k, t in parked.items()}
        assert drops.take() == []  # no drops in this example

    # 0: in (x,1), (x,2), (y,3), (x,4)                         F4.3 / F4.1
    for key, n in [("x", 1), ("x", 2), ("y", 3), ("x", 4)]:
        wake = state.handle_in(req(0, key, n), 0)
    assert wake == ms(10)
    check(4, ["x", "y"], {})
    # 1: out gives (x,1); x moves to the back                   F5
    assert out(1) == (("x", 1), ms(10))
    check(3, ["y", "x"], {})
    # 2: out gives (y,3)
    assert out(2) == (("y", 3), ms(10))
    check(2, ["x", "y"], {})
    # 3: out gives (x,2); y has W None now, x still 10          F9
    assert out(3) == (("x", 2), ms(10))
    check(1, ["y", "x"], {})
    assert state._wakes() == {"x": ms(10), "y": None}
    # 4: y is empty: parked until max(0 + 800, 4); (x,4)        F5, C13
    assert out(4) == (("x", 4), None)
    check(0, ["x"], {"y": 800})
    # 5: x is empty: parked; EMPTY
    assert out(5) == ("EMPTY", None)
    check(0, [], {"x": 800, "y": 800})
    parked_y = state._sub_queue("y")
    # 700: in (y,5): y revived with its old state               F4.2
    assert state.handle_in(req(700, "y", 5), ms(700)) == ms(710)
    assert state._sub_queue("y") is parked_y
    check(1, ["y"], {"x": 800})
    # 801 (late timer): y's head is slow: SLOW until 901; x pruned   F7, F6
    assert state.handle_timeout(ms(801)) == ms(901)
    check(1, ["y"], {})
    # 805: out gives (y,5), sojourn 105
    item = state.handle_out(ms(805))
    assert item is not None and item[0].value == ("y", 5) and item[1] is None
    assert ms(805) - item[0].send_time == ms(105)
    check(0, ["y"], {})
    # 806: y empty, remove time max(0 + 800, 806) = 806 <= now: discarded   F5
    assert out(806) == ("EMPTY", None)
    check(0, [], {})
    assert state._sub_queue("y") is None
    # 900: in (x,6): a new x sub-queue with fresh state         F4.3
    assert state.handle_in(req(900, "x", 6), ms(900)) == ms(910)
    check(1, ["x"], {})


def test_example_f_x2() -> None:
    policy = FairQueue(CodelQueue(target=0.01, interval=0.1), key=first)
    state, _, drops = fair_state(policy)
    x1, x2, y3 = (Request(0, v) for v in [("x", 1), ("x", 2), ("y", 3)])
    for request in (x1, x2, y3):
        wake = state.handle_in(request, 0)
    assert wake == ms(10) and drops.take() == []
    # 10: both sub-queues are due; both become SLOW              F7
    assert state.handle_timeout(ms(10)) == ms(110)
    assert state._wakes() == {"x": ms(110), "y": ms(110)}
    assert drops.take() == []
    # 110: both drop their head, sojourn 110; next drops at 210
    assert state.handle_timeout(ms(110)) == ms(210)
    assert set(drops.take()) == {(x1, ms(110)), (y3, ms(110))}  # Q13: a set
    assert len(state) == 1 and state._robin_keys() == ["x", "y"]
    # 150: out gives (x,2); x and y are empty now, so W is None      F9
    item = state.handle_out(ms(150))
    assert item == (x2, None)
    assert state._robin_keys() == ["y", "x"] and len(state) == 0
    # 151: y, then x, are empty: parked until 210 + 800             F5, C13
    assert state.handle_out(ms(151)) is None
    assert state._robin_keys() == []
    assert state._parked_until() == {"x": ms(1010), "y": ms(1010)}
    assert drops.take() == []
    # 1100: a timeout prunes both                                    F6
    assert state.handle_timeout(ms(1100)) is None
    assert state._parked_until() == {}


# ---------------------------------------------------------------------------
# Single rules


def test_round_robin_p13() -> None:
    state, _, _ = fair_state(FairQueue(DropQueue(), key=first))
    for key, n in [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("c", 5), ("c", 6)]:
        state.handle_in(Request(0, (key, n)), 0)
    assert len(state) == 6  # P13: len counts across sub-queues

    def out() -> Any:
        item = state.handle_out(0)
        return None if item is None else item[0].value

    assert [out(), out(), out()] == [("a", 1), ("b", 4), ("c", 5)]
    # b is discarded when found empty (DropQueue: remove_time = now); a newly
    # active key joins at the end of the cycle
    state.handle_in(Request(0, ("d", 7)), 0)
    assert state._robin_keys() == ["a", "b", "c", "d"]
    assert [out(), out(), out()] == [("a", 2), ("c", 6), ("d", 7)]
    # c and d are empty but stay active until an out finds them empty
    assert state._robin_keys() == ["a", "c", "d"] and state._parked_until() == {}
    state.handle_in(Request(0, ("b", 8)), 0)
    assert [out(), out(), out()] == [("a", 3), ("b", 8), None]
    assert len(state) == 0 and state._robin_keys() == []


def test_lifo_sub_queues_serve_their_newest() -> None:
    state, _, _ = fair_state(FairQueue(DropQueue(out="lifo"), key=first))
    for key, n in [("a", 1), ("a", 2), ("b", 3), ("b", 4)]:
        state.handle_in(Request(0, (key, n)), 0)
    values = []
    while (item := state.handle_out(0)) is not None:
        values.append(item[0].value)
    assert values == [("a", 2), ("b", 4), ("a", 1), ("b", 3)]


def test_due_sub_queues_run_on_other_operations() -> None:  # F7, F4
    state, _, drops = fair_state(FairQueue(TimeoutQueue(timeout=0.01), key=first))
    a = Request(0, ("a", 1))
    assert state.handle_in(a, 0) == ms(10)
    b = Request(ms(5), ("b", 2))
    assert state.handle_in(b, ms(5)) == ms(10)
    # at 12 an arrival for c runs the due sub-queue a: a is dropped
    c = Request(ms(12), ("c", 3))
    assert state.handle_in(c, ms(12)) == ms(15)
    assert drops.take() == [(a, ms(12))]
    assert len(state) == 2 and state._wakes() == {"a": None, "b": ms(15), "c": ms(22)}
    # a is still active (empty) until handle_out finds it empty
    assert state._robin_keys() == ["a", "b", "c"]
    # at 16, out: a is empty and discarded, b is dropped inside its fq_out,
    # then c is served
    assert state.handle_out(ms(16)) == (c, None)
    assert drops.take() == [(b, ms(16))]
    assert state._robin_keys() == ["c"] and len(state) == 0


def test_due_means_once_per_operation_and_not_k() -> None:  # F4, F5, F7
    # A sub-queue that always asks to be woken "now" is due again right after
    # each of its operations: the fair queue still runs it at most once per
    # operation, and never right after the operation that just ran it (k).
    calls: list[str] = []
    policy = FairQueue(CountingPolicy(DropQueue(), calls, wake_now=True), key=first)
    state, _, _ = fair_state(policy)
    assert state.handle_in(Request(0, ("a", 1)), 0) == 0  # created by init
    assert calls == []
    assert state.handle_in(Request(5, ("a", 2)), 5) == 5
    assert calls == ["handle_in"]  # a is due at 5, but it is k
    calls.clear()
    assert state.handle_timeout(5) == 5
    assert calls == ["handle_timeout"]  # once, though due again at once
    calls.clear()
    state.handle_in(Request(6, ("b", 3)), 6)
    assert calls == ["handle_timeout"]  # b is k (new); a is due
    calls.clear()
    item = state.handle_out(7)
    assert item is not None and item[0].value == ("a", 1) and item[1] == 7
    assert calls == ["fq_out", "handle_timeout"]  # a served; b due
    calls.clear()
    assert state.remove(item[0], 8) == 8  # served: no sub-queue holds it (F8)
    assert calls == ["handle_timeout", "handle_timeout"]  # a and b are due: each runs once


def test_revival_after_removal_time_before_pruning() -> None:  # F6, N10
    policy = FairQueue(CodelQueue(target=0.01, interval=0.1), key=first)
    state, _, _ = fair_state(policy)
    state.handle_in(Request(0, ("x", 1)), 0)
    state.handle_out(ms(1))
    assert state.handle_out(ms(2)) is None
    assert state._parked_until() == {"x": ms(800)}
    parked = state._sub_queue("x")
    # no operation has pruned x yet: an arrival at 900 still revives it
    state.handle_in(Request(ms(900), ("x", 2)), ms(900))
    assert state._sub_queue("x") is parked
    assert state._robin_keys() == ["x"] and state._parked_until() == {}
    # x keeps its old CoDel memory (drop_next 0): found empty at 903 its
    # removal time is max(0 + 800, 903) = 903, so it is discarded; a fresh y
    # (drop_next 900) is parked until 1700, which produces no wake-up
    state.handle_in(Request(ms(900), ("y", 1)), ms(900))
    assert state.handle_out(ms(901)) is not None
    assert state.handle_out(ms(902)) is not None
    assert state.handle_out(ms(903)) is None
    assert state._parked_until() == {"y": ms(1700)}
    assert state.handle_timeout(ms(903)) is None


def test_cancel_and_remove_across_sub_queues() -> None:  # F8, P12, P13
    state, _, drops = fair_state(FairQueue(TimeoutQueue(timeout=0.1), key=first))
    requests = [Request(0, (key, n), tag=n % 2) for n, key in enumerate("abcabc")]
    for request in requests:
        state.handle_in(request, 0)
    assert state.handle_cancel(1, ms(1)) == (3, ms(100))
    assert len(state) == 3 and drops.take() == []
    assert state.handle_cancel(7, ms(1)) == (0, ms(100))
    # remove finds the sub-queue by the key
    assert state.remove(requests[2], ms(2)) == ms(100)
    assert len(state) == 2 and state._wakes()["c"] is None
    # removing a request that is not queued changes nothing
    assert state.remove(requests[2], ms(3)) == ms(100)
    assert state.remove(Request(0, ("z", 0)), ms(3)) == ms(100)
    assert len(state) == 2 and state._robin_keys() == ["a", "b", "c"]
    # a remove at 100 runs the other due sub-queue
    assert state.remove(requests[0], ms(100)) is None
    assert drops.take() == [(requests[4], ms(100))]
    assert len(state) == 0


def test_send_time_and_len() -> None:  # F9
    state, _, _ = fair_state(FairQueue(DropQueue(), key=first))
    assert state.send_time() is None
    state.handle_in(Request(5, ("b", 1)), 5)
    state.handle_in(Request(7, ("a", 2)), 7)
    state.handle_in(Request(9, ("b", 3)), 9)
    assert state.send_time() == 5 and len(state) == 3
    state.handle_out(10)
    assert state.send_time() == 7 and len(state) == 2


def test_init_groups_by_key() -> None:  # F10
    values = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)]
    requests = [Request(n, v) for n, v in enumerate(values)]
    state, wake, drops = fair_state(FairQueue(DropQueue(max_len=1), key=first), requests, 10)
    assert wake is None
    # robin in order of each key's oldest request; Q12 trims per sub-queue
    assert state._robin_keys() == ["b", "a", "c"]
    assert {r.value for r, _ in drops.take()} == {("b", 3), ("a", 5)}
    assert len(state) == 3


def test_terminate_orders_by_send_time_then_arrival() -> None:  # F11
    state, _, _ = fair_state(FairQueue(DropQueue(out="lifo"), key=first))
    r1 = Request(5, ("b", 1))
    r2 = Request(5, ("a", 2))
    r3 = Request(5, ("b", 3))
    r4 = Request(8, ("c", 4))
    r5 = Request(8, ("a", 5))
    for request in (r1, r2, r3, r4, r5):
        state.handle_in(request, 8)
    assert state.terminate() == [r1, r2, r3, r4, r5]
    assert len(state) == 0 and state.send_time() is None


def test_config_change_same_template_class() -> None:  # F12, first case
    old = FairQueue(CodelQueue(target=0.01, interval=0.1), key=first)
    state, _, drops = fair_state(old)
    for key in "abc":
        state.handle_in(Request(0, (key, 0)), 0)
    for t in (1, 2):
        state.handle_out(ms(t))
    assert state.handle_out(ms(3)) is not None
    assert state.handle_out(ms(4)) is None
    assert set(state._parked_until()) == {"a", "b", "c"}
    state.handle_in(Request(ms(5), ("b", 1)), ms(5))
    state.handle_in(Request(ms(5), ("d", 1)), ms(5))
    states = {key: state._sub_queue(key) for key in "abcd"}
    new = FairQueue(CodelQueue(target=0.02, interval=0.2), key=first)
    assert state.config_change(new, ms(6)) == ms(25)
    # every sub-queue kept its state; parked ones are active again, appended
    assert all(state._sub_queue(key) is states[key] for key in "abcd")
    assert state._robin_keys() == ["b", "d", "a", "c"]
    assert state._parked_until() == {}
    assert state._wakes() == {"a": None, "b": ms(25), "c": None, "d": ms(25)}
    assert drops.take() == [] and len(state) == 2


def test_config_change_other_template_class() -> None:  # F12, second case
    state, _, drops = fair_state(FairQueue(CodelQueue(), key=first))
    c0 = Request(0, ("c", 0))
    state.handle_in(c0, 0)
    assert state.handle_out(0) == (c0, None)
    a1, a2, b3 = Request(ms(1), ("a", 1)), Request(ms(2), ("a", 2)), Request(ms(3), ("b", 3))
    for request in (a1, a2, b3):
        state.handle_in(request, ms(3))
    assert state._robin_keys() == ["c", "a", "b"]
    assert state.handle_out(ms(3)) == (a1, ms(101))  # c parked on the way
    assert state._parked_until() == {"c": 8 * 10**9}  # max(0 + 8 * interval, now)
    before = {key: state._sub_queue(key) for key in "abc"}
    new = FairQueue(TimeoutQueue(timeout=0.001), key=first)
    assert state.config_change(new, ms(4)) is None
    # every sub-queue is a fresh TimeoutQueue state that took over the
    # requests (and dropped the expired ones); c is active again
    assert all(state._sub_queue(key) is not before[key] for key in "abc")
    assert state._robin_keys() == ["b", "a", "c"] and state._parked_until() == {}
    assert set(drops.take()) == {(a2, ms(4)), (b3, ms(4))}
    assert len(state) == 0


def test_config_change_other_key_reinitialises() -> None:  # F12, third case
    state, _, drops = fair_state(FairQueue(DropQueue(), key=first))
    values = [(1, 0), (2, 1), (3, 2), (2, 3), (1, 4)]
    requests = [Request(n, v) for n, v in enumerate(values)]
    for request in requests:
        state.handle_in(request, 5)
    state.handle_out(5)  # (1, 0): robin is now 2, 3, 1
    keep = state._sub_queue(2)
    # a key function equal in behaviour but another object counts as "other"
    state.config_change(FairQueue(DropQueue(), key=first_again), 6)
    assert state._sub_queue(2) is not keep
    assert state._robin_keys() == [2, 3, 1]  # by each key's oldest request (F10)
    state.config_change(FairQueue(DropQueue(), key=parity), 7)
    assert state._robin_keys() == [0, 1]
    state.config_change(FairQueue(DropQueue(), key=parity, buckets=1), 8)
    assert state._robin_keys() == [0]
    assert state.terminate() == requests[1:]
    assert drops.take() == []


def test_config_change_key_failure_keeps_requests() -> None:
    state, _, _ = fair_state(FairQueue(DropQueue(), key=first))
    requests = [Request(0, (n,)) for n in range(3)]
    for request in requests:
        state.handle_in(request, 0)

    def broken(value: Any) -> Hashable:
        raise RuntimeError("broken key")

    with pytest.raises(RuntimeError):
        state.config_change(FairQueue(DropQueue(), key=broken), 1)
    assert len(state) == 3 and state._robin_keys() == [0, 1, 2]
    assert state.terminate() == requests


# ---------------------------------------------------------------------------
# Cost: nothing is scanned when nothing is due


@attrs.frozen
class CountingPolicy:
    """A custom policy (any QueuePolicy may be a template) that counts calls.

    With ``wake_now`` its states return ``now`` as every wake time.
    """

    inner: Any
    calls: list[str] = attrs.field(eq=False)
    wake_now: bool = False

    def init(self, requests: Sequence[Request], now: int, on_drop: Any) -> tuple[Any, Any]:
        state, wake = self.inner.init(requests, now, on_drop)
        return CountingState(state, self.calls, self.wake_now), (now if self.wake_now else wake)


class CountingState:
    def __init__(self, inner: Any, calls: list[str], wake_now: bool) -> None:
        self.inner = inner
        self.calls = calls
        self.wake_now = wake_now

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("handle_in", "handle_out", "fq_out", "handle_timeout", "remove"):
            return attr

        def counted(*args: Any) -> Any:
            self.calls.append(name)
            result = attr(*args)
            if not self.wake_now:
                return result
            now = args[-1]
            if name in ("handle_out", "fq_out"):
                return result if result is None or result[0] is None else (result[0], now)
            return now

        return counted

    def __len__(self) -> int:
        return len(self.inner)


def test_hot_path_does_not_visit_idle_sub_queues() -> None:
    calls: list[str] = []
    policy = FairQueue(CountingPolicy(TimeoutQueue(timeout=1.0), calls), key=first)
    state, _, _ = fair_state(policy)
    keys = 2000
    for n in range(keys):
        state.handle_in(Request(n, (n, 0)), n)
    assert calls == []  # new sub-queues are made by the policy's init
    for n in range(keys * 5):
        now = keys + n
        state.handle_in(Request(now, (n % keys, n)), now)
        state.handle_out(now)
    # one sub-queue call per operation: nothing else is run, nothing is due
    assert len(calls) == 2 * keys * 5
    assert len(state._wake_heap) <= 2 * len(state._wake_entry) + 32
    calls.clear()
    # once everything is due, one timeout runs each sub-queue exactly once
    state.handle_timeout(10**9 + keys * 10)
    assert calls.count("handle_timeout") == len(state._robin_keys())


# ---------------------------------------------------------------------------
# The reference model and the state machine


class FairModel:
    """F3-F12 transcribed naively: dicts and lists, every sub-queue scanned."""

    def __init__(
        self, policy: FairQueue, requests: Sequence[Request], now: int, on_drop: Any
    ) -> None:
        self.on_drop = on_drop
        self.wake = self.setup(policy, requests, now)

    def key_of(self, value: Any, policy: FairQueue | None = None) -> Hashable:  # F2
        policy = policy or self.policy
        key = value if policy.key is None else policy.key(value)
        return key if policy.buckets is None else hash(key) % policy.buckets

    def setup(self, policy: FairQueue, requests: Sequence[Request], now: int) -> int | None:
        self.policy = policy
        self.active: dict[Hashable, Any] = {}
        self.robin: list[Hashable] = []
        self.parked: dict[Hashable, tuple[Any, int]] = {}
        self.wakes: dict[Hashable, int | None] = {}
        groups: dict[Hashable, list[Request]] = {}
        for request in requests:  # F10
            groups.setdefault(self.key_of(request.value), []).append(request)
        for key, group in groups.items():
            self.active[key], self.wakes[key] = policy.queue.init(group, now, self.on_drop)
            self.robin.append(key)
        return self.fair_wake()

    def fair_wake(self) -> int | None:  # F9
        wakes = [w for w in self.wakes.values() if w is not None]
        return min(wakes) if wakes else None

    def run_due(self, now: int, skip: Any = ...) -> None:  # F7
        for key in self.robin:
            wake = self.wakes[key]
            if key != skip and wake is not None and wake <= now:
                self.wakes[key] = self.active[key].handle_timeout(now)

    def prune(self, now: int) -> None:  # F6
        for key in [k for k, (_, t) in self.parked.items() if t <= now]:
            del self.parked[key]

    def handle_in(self, request: Request, now: int) -> int | None:  # F4
        key = self.key_of(request.value)
        if key in self.active:
            self.wakes[key] = self.active[key].handle_in(request, now)
        elif key in self.parked:
            self.active[key] = self.parked.pop(key)[0]
            self.robin.append(key)
            self.wakes[key] = self.active[key].handle_in(request, now)
        else:
            self.active[key], self.wakes[key] = self.policy.queue.init([request], now, self.on_drop)
            self.robin.append(key)
        self.run_due(now, key)
        self.prune(now)
        return self.fair_wake()

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:  # F5
        while self.robin:
            key = self.robin.pop(0)
            request, wake = self.active[key].fq_out(now)
            if request is not None:
                self.robin.append(key)
                self.wakes[key] = wake
                self.run_due(now, key)
                self.prune(now)
                return request, self.fair_wake()
            sub = self.active.pop(key)
            del self.wakes[key]
            assert wake is not None
            if wake > now:
                self.parked[key] = (sub, wake)
        self.prune(now)
        return None

    def handle_timeout(self, now: int) -> int | None:  # F7
        self.run_due(now)
        self.prune(now)
        return self.fair_wake()

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:  # F8
        total = 0
        for key in self.robin:
            count, self.wakes[key] = self.active[key].handle_cancel(tag, now)
            total += count
        self.prune(now)
        return total, self.fair_wake()

    def remove(self, request: Request, now: int) -> int | None:  # F8
        key = self.key_of(request.value)
        if key in self.active and request in self.active[key].snapshot():
            self.wakes[key] = self.active[key].remove(request, now)
            self.run_due(now, key)
        else:
            self.run_due(now)
        self.prune(now)
        return self.fair_wake()

    def config_change(self, policy: FairQueue, now: int) -> int | None:  # F12
        old = self.policy
        if policy.key is old.key and policy.buckets == old.buckets:
            same = type(policy.queue) is type(old.queue)
            self.policy = policy
            for key, sub in [*self.active.items(), *((k, s) for k, (s, _) in self.parked.items())]:
                if same:
                    self.wakes[key] = sub.config_change(policy.queue, now)
                else:
                    sub, self.wakes[key] = policy.queue.init(sub.terminate(), now, self.on_drop)
                self.active[key] = sub
            self.robin.extend(self.parked)
            self.parked = {}
            return self.fair_wake()
        return self.setup(policy, self.terminate(), now)

    def __len__(self) -> int:
        return sum(len(sub) for sub in self.active.values())

    def send_time(self) -> int | None:
        times = [sub.send_time() for sub in self.active.values()]
        return min((t for t in times if t is not None), default=None)

    def terminate(self) -> list[Request]:  # F11
        requests = [r for sub in self.active.values() for r in sub.terminate()]
        return sorted(requests, key=lambda r: (r.send_time, r.seq))


# Configurations. Durations are a few ns so that time advances of a few ns
# reach every regime; seconds convert back exactly (queues.md §0).


def seconds(ns: int) -> float:
    value = ns / 1_000_000_000
    assert round(value * 1_000_000_000) == ns
    return value


OUT = st.sampled_from(["fifo", "lifo"])
DROP = st.sampled_from(["head", "tail"])
MAX_LEN = st.one_of(st.none(), st.integers(0, 4))


@st.composite
def lengths(draw: st.DrawFn) -> dict[str, Any]:
    min_len = draw(st.integers(0, 2))
    max_len = draw(st.one_of(st.none(), st.integers(min_len, 4)))
    return {"out": draw(OUT), "drop": draw(DROP), "min_len": min_len, "max_len": max_len}


TEMPLATES: dict[type, st.SearchStrategy[Any]] = {
    DropQueue: st.builds(DropQueue, out=OUT, drop=DROP, max_len=MAX_LEN),
    TimeoutQueue: st.builds(
        lambda timeout, kw: TimeoutQueue(timeout=timeout, **kw),
        st.one_of(st.none(), st.integers(0, 8).map(seconds)),
        lengths(),
    ),
    CodelQueue: st.builds(
        lambda target, interval, kw: CodelQueue(target=target, interval=interval, **kw),
        st.integers(0, 4).map(seconds),
        st.integers(1, 10).map(seconds),
        lengths(),
    ),
    AdaptiveQueue: st.builds(
        lambda target, interval, extra, kw: AdaptiveQueue(
            target=seconds(target),
            interval=seconds(interval),
            timeout=None if extra is None else seconds(target + extra),
            **kw,
        ),
        st.integers(0, 4),
        st.integers(1, 10),
        st.one_of(st.none(), st.integers(0, 6)),
        lengths(),
    ),
}
ANY_TEMPLATE = st.one_of(*TEMPLATES.values())
KEYS = st.sampled_from([None, first, first_again, parity])
BUCKETS = st.one_of(st.none(), st.integers(1, 3))
FAIR = st.builds(FairQueue, queue=ANY_TEMPLATE, key=KEYS, buckets=BUCKETS)
CODEL_FAIR = st.builds(FairQueue, queue=TEMPLATES[CodelQueue], key=KEYS, buckets=BUCKETS)


def ids(requests: Sequence[Request]) -> list[int]:
    return [r.seq for r in requests]


def snapshot(sub: Any) -> dict[str, Any]:
    """Every slot of a built-in sub-queue state, requests as arrival numbers.

    The model and the real fair queue run separate but identical sub-queue
    states, so equal snapshots show that each key kept (or lost) its policy
    state exactly as F4-F6 and F12 say: revived, fresh, or reconfigured.
    """
    slots = {name for cls in type(sub).__mro__ for name in getattr(cls, "__slots__", ())}
    values = {name: getattr(sub, name) for name in slots if name != "_on_drop"}
    values["_queue"] = ids(values["_queue"])
    return {"class": type(sub), **values}


class FairMachine(RuleBasedStateMachine):
    """A real fair-queue state and :class:`FairModel` side by side.

    ``queued`` is the ledger of requests given to the state and not yet out of
    it (P1); every operation's drops, answers and removals must come from it.
    """

    policies = FAIR  # what the initial and the reconfigured policies are drawn from

    @initialize(policy=FAIR)
    def start(self, policy: FairQueue) -> None:
        self.now = 0
        self.last_send = 0
        self.serial = itertools.count()
        self.state_drops = DropRecorder()
        self.model_drops = DropRecorder()
        self.queued: dict[int, Request] = {}  # seq -> request, insertion ordered
        self.seen: list[Request] = []
        self.parked: dict[Hashable, Any] = {}
        self.create(policy, [])

    def create(self, policy: FairQueue, requests: list[Request]) -> None:
        self.policy = policy
        self.state, wake = policy.init(requests, self.now, self.state_drops)
        self.model = FairModel(policy, requests, self.now, self.model_drops)
        self.after(wake, self.model.wake)

    # checks -----------------------------------------------------------------

    def after(self, wake: int | None, model_wake: int | None) -> list[Request]:
        """Compare one operation's effects; return the requests it dropped."""
        dropped = self.state_drops.take()
        assert {(r.seq, t) for r, t in dropped} == {(r.seq, t) for r, t in self.model_drops.take()}
        assert len({r.seq for r, _ in dropped}) == len(dropped)  # Q4: once each
        for request, at in dropped:
            assert at == self.now
            assert self.queued.pop(request.seq) is request  # P1
        assert wake == model_wake
        assert wake is None or wake >= self.now  # Q6
        for key, (_, until) in self.parked.items():  # coverage of F4-F6 paths
            if key in self.model.active:
                event("revived parked" + (" after its removal time" if until <= self.now else ""))
            elif key not in self.model.parked:
                event("pruned or replaced parked")
        if len(self.model.parked) > len(self.parked):
            event("parked")
        if dropped:
            event("dropped")
        return [r for r, _ in dropped]

    def keyed(self, key: Hashable) -> list[Request]:
        """The queued requests of sub-queue ``key``, oldest first."""
        return [r for r in self.queued.values() if self.model.key_of(r.value) == key]

    @invariant()
    def agree(self) -> None:
        state, model = self.state, self.model
        assert len(state) == len(model) == len(self.queued)  # P1, P2, P13
        oldest = min((r.send_time for r in self.queued.values()), default=None)
        assert state.send_time() == model.send_time() == oldest
        assert state._robin_keys() == model.robin  # F3
        assert state._parked_until() == {k: t for k, (_, t) in model.parked.items()}
        assert state._wakes() == model.wakes
        self.parked = dict(model.parked)
        for key, (sub, _) in model.parked.items():
            assert snapshot(state._sub_queue(key)) == snapshot(sub)
        max_len = getattr(self.policy.queue, "max_len", None)
        for key in model.robin:  # P2 per sub-queue
            sub = state._sub_queue(key)
            assert sub is not None
            assert snapshot(sub) == snapshot(model.active[key])
            assert len(sub) == len(self.keyed(key))
            assert max_len is None or len(sub) <= max_len

    # rules ------------------------------------------------------------------

    @rule(dt=st.one_of(st.integers(0, 6), st.integers(20, 90)))
    def advance(self, dt: int) -> None:  # long jumps outlast parked CoDel memories
        self.now += dt

    @rule()
    def advance_to_wake(self) -> None:
        wake = self.model.fair_wake()
        if wake is not None:
            self.now = max(self.now, wake)

    @rule(
        key=st.integers(0, 3), sub=st.integers(0, 1), lag=st.integers(0, 3), tag=st.integers(0, 2)
    )
    def enqueue(self, key: int, sub: int, lag: int, tag: int) -> None:
        send = max(self.last_send, self.now - lag)  # Q2
        self.last_send = send
        request = Request(send, (key, sub), tag=tag)
        self.queued[request.seq] = request
        self.seen.append(request)
        wake = self.state.handle_in(request, self.now)
        self.after(wake, self.model.handle_in(request, self.now))

    @rule()
    def dequeue(self) -> None:
        robin = list(self.model.robin)
        before = dict(self.queued)
        item = self.state.handle_out(self.now)
        model_item = self.model.handle_out(self.now)
        if item is None:
            assert model_item is None
            dropped = self.after(None, None)
        else:
            assert model_item is not None and model_item[0] is item[0]
            dropped = self.after(item[1], model_item[1])
            request = item[0]
            assert self.queued.pop(request.seq) is request  # P1
            served_key = self.model.key_of(request.value)
            out = getattr(self.policy.queue, "out", "fifo")
            rest = [r for r in self.keyed(served_key)]
            if out == "fifo":  # P3: the oldest of its key (after this call's drops)
                assert all(r.seq > request.seq for r in rest)
            elif out == "lifo":  # P3: the newest of its key
                assert all(r.seq < request.seq for r in rest)
        if not dropped:  # P13: with no drops, the first non-empty key in the cycle
            keyed = [
                k for k in robin if any(self.model.key_of(r.value) == k for r in before.values())
            ]
            if item is None:
                assert not keyed and not before
            else:
                assert self.model.key_of(item[0].value) == keyed[0]

    @rule()
    def timeout(self) -> None:
        wake = self.state.handle_timeout(self.now)
        self.after(wake, self.model.handle_timeout(self.now))

    @rule(tag=st.integers(0, 3))
    def cancel(self, tag: int) -> None:
        tagged = {r.seq for r in self.queued.values() if r.tag == tag}
        count, wake = self.state.handle_cancel(tag, self.now)
        model_count, model_wake = self.model.handle_cancel(tag, self.now)
        assert count == model_count == len(tagged)  # P12, P13
        dropped = self.after(wake, model_wake)
        assert not tagged & {r.seq for r in dropped}
        for seq in tagged:
            del self.queued[seq]

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        if self.seen:
            request = data.draw(st.sampled_from(self.seen))
        else:
            request = Request(self.now, (0, 0))
        was_queued = request.seq in self.queued
        wake = self.state.remove(request, self.now)
        dropped = self.after(wake, self.model.remove(request, self.now))
        if was_queued:
            assert request not in dropped
            del self.queued[request.seq]

    @rule(
        data=st.data(),
        how=st.sampled_from(["same class", "other class", "any", "hand over"]),
    )
    def reconfigure(self, data: st.DataObject, how: str) -> None:
        """F12 through ``config_change``, or Q7 across instances (``hand over``)."""
        old = self.policy
        if how == "hand over":
            self.hand_over(data.draw(self.policies))
            return
        if how == "any":
            policy = data.draw(self.policies)
        else:
            if how == "same class":
                template = data.draw(TEMPLATES[type(old.queue)])
            else:
                template = data.draw(
                    st.one_of(*(s for t, s in TEMPLATES.items() if t is not type(old.queue)))
                )
            policy = FairQueue(template, key=old.key, buckets=old.buckets)
        same = policy.key is old.key and policy.buckets == old.buckets
        same_class = type(policy.queue) is type(old.queue)
        event(
            f"F12 {'same key' if same else 'other key'}, {same_class=}, parked={bool(self.parked)}"
        )
        self.policy = policy
        wake = self.state.config_change(policy, self.now)
        self.after(wake, self.model.config_change(policy, self.now))

    def hand_over(self, policy: FairQueue) -> None:
        """Terminate (F11), then init a new fair queue with the requests (F10)."""
        requests = self.state.terminate()
        assert ids(requests) == ids(self.model.terminate())
        self.check_terminated(requests)
        self.create(policy, requests)

    def check_terminated(self, requests: list[Request]) -> None:
        assert sorted(ids(requests)) == sorted(self.queued)  # P1
        order = [(r.send_time, r.seq) for r in requests]
        assert order == sorted(order)  # F11

    def teardown(self) -> None:
        if hasattr(self, "state"):
            self.check_terminated(self.state.terminate())
            assert len(self.state) == 0


class CodelFairMachine(FairMachine):
    """The same, starting from CoDel templates: parking, revival and pruning (F5, F6)."""

    policies = CODEL_FAIR

    @initialize(policy=CODEL_FAIR)
    def start(self, policy: FairQueue) -> None:
        super().start(policy)


MACHINE_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FairMachine.TestCase.settings = MACHINE_SETTINGS
CodelFairMachine.TestCase.settings = MACHINE_SETTINGS
test_fair_machine = FairMachine.TestCase
test_codel_fair_machine = CodelFairMachine.TestCase
