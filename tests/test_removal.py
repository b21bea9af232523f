"""Issue 9 defect 5: removal costs O(1), cancel by tag O(its requests), order exact.

The cost tests count operations, not seconds: a request class whose ``==``
counts its calls shows a queue scan (``deque.remove`` and list searches compare
every element they pass), and a tag class does the same for cancel by tag.
The hypothesis tests drive the lazily deleting queues far enough for dead
entries to reach both ends and for the deque to be compacted, against a list.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from queue_harness import DropRecorder

from sbroker import Broker
from sbroker._pending import Pending, PendingRequest, TagRegistry
from sbroker.queues import (
    AdaptiveQueue,
    CodelQueue,
    DropQueue,
    FairQueue,
    QueuePolicy,
    Request,
    TimeoutQueue,
    _base,
)
from sbroker.queues.timeout import _TimeoutState

comparisons = 0


class CountedEquality:
    """A mixin: ``==`` (and so ``!=``) counts its calls; equal means identical."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        global comparisons
        comparisons += 1
        return self is other

    __hash__ = object.__hash__


class CountingRequest(CountedEquality, Request):
    """A request whose comparisons are counted (hash and identity as usual)."""

    __slots__ = ()


class CountingTag(CountedEquality):
    """A tag whose comparisons are counted."""

    __slots__ = ()


def counted(action: Any) -> int:
    """Run ``action()`` and return how many counted comparisons it made."""
    global comparisons
    comparisons = 0
    action()
    return comparisons


POLICIES = [
    DropQueue(),
    TimeoutQueue(timeout=None),
    CodelQueue(target=1000.0),
    AdaptiveQueue(target=1000.0, timeout=None),
    FairQueue(TimeoutQueue(timeout=None), key=lambda value: value % 7),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: type(p).__name__)
def test_removing_waiters_in_any_order_scans_nothing(policy: QueuePolicy) -> None:
    """The trio-cancellation path (``remove``) never searches the queue (defect 5)."""
    n = 3000
    state, _ = policy.init([], 0, DropRecorder())
    requests = [CountingRequest(0, i) for i in range(n)]
    for request in requests:
        state.handle_in(request, 0)
    order = requests[:]
    random.Random(9).shuffle(order)
    gone = order[: n // 2]
    # a deque.remove scan would make about n * n / 8 comparisons here
    assert counted(lambda: [state.remove(request, 1) for request in gone]) <= n
    assert len(state) == n - len(gone)
    kept = [r for r in requests if r not in set(gone)]
    assert state.send_time() == 0
    served = []
    while (item := state.handle_out(2)) is not None:
        served.append(item[0])
    assert sorted(served, key=lambda r: r.value) == kept  # nothing lost, nothing twice
    if not isinstance(policy, FairQueue):
        assert served == kept  # fifo order exact


def test_fifo_and_lifo_order_is_exact_after_removals() -> None:
    for out in ("fifo", "lifo"):
        state, _ = TimeoutQueue(timeout=None, out=out).init([], 0, DropRecorder())
        requests = [Request(0, i) for i in range(500)]
        for request in requests:
            state.handle_in(request, 0)
        for request in requests[1::3] + requests[::7]:
            state.remove(request, 0)
        gone = set(requests[1::3] + requests[::7])
        kept = [r for r in requests if r not in gone]
        served = [state.handle_out(0)[0] for _ in kept]  # type: ignore[index]
        assert served == (kept if out == "fifo" else kept[::-1])
        assert state.handle_out(0) is None


def test_broker_cancel_by_tag_touches_only_that_tags_requests() -> None:
    """``broker.cancel(tag)`` with many tags: O(k) per tag, not a queue scan (defect 5)."""

    async def main() -> None:
        broker = Broker(ask=DropQueue(), ask_r=DropQueue())
        tags = [CountingTag() for _ in range(2000)]
        pendings = [broker.async_ask(i, tag=tag) for i, tag in enumerate(tags)]
        # the old handle_cancel compared every queued tag: about n * n / 2
        cancelled = counted(lambda: [broker.cancel(tag) for tag in tags[::2]])
        assert cancelled <= 4 * len(tags)
        assert broker.len() == len(tags) // 2
        assert all(p.cancelled for p in pendings[::2])
        assert not any(p.cancelled for p in pendings[1::2])
        broker.close()

    trio.run(main)


class CountingPendingRequest(CountedEquality, PendingRequest):
    __slots__ = ()


def test_tag_registry_forgets_answered_requests_without_a_scan() -> None:
    registry = TagRegistry()
    pending = Pending("shared")
    requests = [CountingPendingRequest(0, i, pending, registry) for i in range(3000)]
    for request in requests:
        request.register()
    # answered newest first: a list-based registry scans the whole list each time
    assert counted(lambda: [registry.discard(r) for r in reversed(requests)]) <= len(requests)
    assert not registry._by_tag


def test_fair_queue_send_time_does_not_visit_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter pass asks ``send_time`` often; it must not cost O(active keys)."""
    visits = 0
    inner = _TimeoutState.send_time

    def send_time(self: Any) -> int | None:
        nonlocal visits
        visits += 1
        return inner(self)

    monkeypatch.setattr(_TimeoutState, "send_time", send_time)
    keys = 2000
    state, _ = FairQueue(TimeoutQueue(timeout=None), key=None).init([], 0, DropRecorder())
    for key in range(keys):
        state.handle_in(Request(key, key), key)
    visits = 0
    for now in range(keys, 2 * keys):
        assert state.send_time() == now - keys
        state.handle_out(now)  # serves the oldest key's only request
        state.handle_in(Request(now, now), now)
    assert visits <= 4 * keys  # one pass over every key each time would be keys ** 2


# ---------------------------------------------------------------------------
# The lazily deleting queue against a list, through compaction


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("in"), st.integers(0, 3)),
        st.tuples(st.just("out"), st.none()),
        st.tuples(st.just("remove"), st.integers(0, 10**6)),
        st.tuples(st.just("cancel"), st.integers(0, 3)),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=OPS,
    out=st.sampled_from(["fifo", "lifo"]),
    drop=st.sampled_from(["head", "tail"]),
    max_len=st.none() | st.integers(0, 40),
    known=st.booleans(),
)
def test_lazy_deletion_keeps_the_exact_order(
    ops: list[tuple[str, Any]], out: str, drop: str, max_len: int | None, known: bool
) -> None:
    """Q3, Q11, P3, P12 with many dead entries: a DropQueue against a plain list."""
    slack = _base._COMPACT_SLACK
    _base._COMPACT_SLACK = 2  # compact early, so that the test reaches it
    try:
        recorder = DropRecorder()
        state, _ = DropQueue(out=out, drop=drop, max_len=max_len).init([], 0, recorder)
        model: list[Request] = []
        made: list[Request] = []
        for op, arg in ops:
            if op == "in":
                request = Request(0, len(made), tag=arg)
                made.append(request)
                state.handle_in(request, 0)
                model.append(request)
                if max_len is not None and len(model) > max_len:
                    model.pop(0 if drop == "head" and max_len else -1)
            elif op == "out":
                item = state.handle_out(0)
                expected = (model.pop() if out == "lifo" else model.pop(0)) if model else None
                assert (item and item[0]) == expected
            elif op == "remove" and made:
                request = made[arg % len(made)]
                state.remove(request, 0)
                model = [r for r in model if r is not request]
            elif op == "cancel":
                if known:
                    count, _ = state.cancel_requests(arg, made, 0)
                else:
                    count, _ = state.handle_cancel(arg, 0)
                assert count == sum(r.tag == arg for r in model)
                model = [r for r in model if r.tag != arg]
            assert len(state) == len(model)
            assert list(state._queue) == model
            assert state.send_time() == (model[0].send_time if model else None)
        assert state.terminate() == model
    finally:
        _base._COMPACT_SLACK = slack


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["in", "out", "cancel", "remove", "wait"]), st.integers(0, 40)),
        max_size=120,
    ),
    template=st.sampled_from(
        [DropQueue(max_len=3), TimeoutQueue(timeout=0.00002), CodelQueue(0.00001, 0.00005)]
    ),
)
def test_fair_cancel_requests_acts_as_handle_cancel(
    ops: list[tuple[str, int]], template: QueuePolicy
) -> None:
    """F8: ``cancel_requests`` given the tag's requests is observably ``handle_cancel``."""

    def key(value: Any) -> Hashable:
        return value % 4

    policy = FairQueue(template, key=key)
    recorders = [DropRecorder(), DropRecorder()]
    states = [policy.init([], 0, recorder)[0] for recorder in recorders]
    made: list[list[Request]] = [[], []]
    now = 0
    for op, arg in ops:
        results = []
        for state, mine in zip(states, made, strict=True):
            if op == "in":
                request = Request(now, arg, tag=arg % 3)
                mine.append(request)
                results.append(state.handle_in(request, now))
            elif op == "out":
                item = state.handle_out(now)
                results.append(None if item is None else (item[0].seq - mine[0].seq, item[1]))
            elif op == "cancel":
                if state is states[0]:
                    results.append(state.handle_cancel(arg % 3, now))
                else:
                    results.append(state.cancel_requests(arg % 3, mine, now))
            elif op == "remove" and mine:
                results.append(state.remove(mine[arg % len(mine)], now))
            else:
                results.append(state.handle_timeout(now))
            results.append((len(state), state.send_time()))
        assert results[: len(results) // 2] == results[len(results) // 2 :]
        drops = [[r.seq - mine[0].seq for r, _ in rec.take()] for rec, mine in zip(recorders, made)]
        assert sorted(drops[0]) == sorted(drops[1])
        now += 10_000 if op == "wait" else 1
