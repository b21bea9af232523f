"""Helpers shared by the DropQueue and TimeoutQueue tests (queues.md §§1-3, 6).

Three parts:

* units and a recording ``on_drop`` callback;
* :class:`Trace`, a driver for the worked examples: it runs one operation on
  one policy state and returns ``(drops, result, len, W)`` in milliseconds;
* :class:`SingleQueueMachine`, a hypothesis state machine that drives a real
  DropQueue/TimeoutQueue state and an independent reference model written from
  the spec (P15) side by side, checking P1-P7, P9-P12 after every step. Each
  test module subclasses it with the policy it starts from.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from fractions import Fraction
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sbroker.queues import DropQueue, QueueState, Request, TimeoutQueue

MS = 1_000_000  # ns per millisecond (queues.md §0)
NS_PER_S = 1_000_000_000


def ms(value: float | str) -> int:
    """Milliseconds (as in the spec tables) to int ns, exactly: ``ms(280.710678)``
    is 280 710 678 (a float is read as the decimal it prints as)."""
    ns = Fraction(repr(value) if isinstance(value, float) else value) * MS
    assert ns.denominator == 1, f"{value} ms is not a whole number of ns"
    return int(ns)


def to_ms(ns: int | None) -> int | Fraction | None:
    """ns to ms, exact: an ``int`` when whole, else a ``Fraction``."""
    if ns is None:
        return None
    whole, rest = divmod(ns, MS)
    return whole if rest == 0 else Fraction(ns, MS)


def spec_ns(seconds: float | None) -> int | None:
    """queues.md §0: ``round(seconds * 1_000_000_000)``, ``None`` is infinity."""
    return None if seconds is None else round(seconds * NS_PER_S)


class DropRecorder:
    """An ``on_drop`` callback that records ``(request, now)`` for each drop."""

    def __init__(self) -> None:
        self.calls: list[tuple[Request, int]] = []

    def __call__(self, request: Request, now: int) -> None:
        self.calls.append((request, now))

    def take(self) -> list[tuple[Request, int]]:
        calls, self.calls = self.calls, []
        return calls


EMPTY = "EMPTY"


class Trace:
    """Replays a worked example on the policy alone (queues.md §0).

    Requests are named; each is sent at its arrival time unless ``sent`` is
    given (ms). Every method returns ``(drops, result, len, W)``: ``drops`` maps
    the name of each request dropped by that operation to its sojourn in ms
    (a set, Q13), ``result`` is ``None`` for operations other than ``out``,
    else ``EMPTY`` or ``(name, sojourn_ms)``, and ``W`` is in ms or ``None``.
    """

    def __init__(self, policy: Any, t: float = 0, held: Sequence[tuple[str, float]] = ()) -> None:
        self.recorder = DropRecorder()
        self.requests: dict[str, Request] = {}
        self.now = ms(t)
        initial = [self._request(name, sent) for name, sent in held]
        state, wake = policy.init(initial, self.now, self.recorder)
        self.state: QueueState = state
        self.init_result = self._row(None, wake)

    def _request(self, name: str, sent: float) -> Request:
        request = Request(ms(sent), value=name, tag=name)
        self.requests[name] = request
        return request

    def _at(self, t: float) -> None:
        now = ms(t)
        assert now >= self.now, "Q1: time never goes back"
        self.now = now

    def _row(self, result: Any, wake: int | None) -> tuple[Any, ...]:
        drops: dict[str, int | Fraction | None] = {}
        for request, at in self.recorder.take():
            assert at == self.now, "P4: sojourn uses the dropping operation's now"
            assert at >= request.send_time, "P4: sojourn >= 0"
            assert request.value not in drops, "Q4: dropped once"
            drops[request.value] = to_ms(at - request.send_time)
        if wake is not None:
            assert wake >= self.now, "Q6: W >= now"
        return drops, result, len(self.state), to_ms(wake)

    def in_(self, t: float, name: str, sent: float | None = None) -> tuple[Any, ...]:
        self._at(t)
        request = self._request(name, t if sent is None else sent)
        return self._row(None, self.state.handle_in(request, self.now))

    def out(self, t: float) -> tuple[Any, ...]:
        self._at(t)
        item = self.state.handle_out(self.now)
        if item is None:
            return self._row(EMPTY, None)
        request, wake = item
        return self._row((request.value, to_ms(self.now - request.send_time)), wake)

    def timeout(self, t: float) -> tuple[Any, ...]:
        self._at(t)
        return self._row(None, self.state.handle_timeout(self.now))


# --------------------------------------------------------------------------
# Strategies for configurations (small ns durations, as in the state machine)

# Timeouts of a few ns; None (infinity) about one time in seven.
TIMEOUTS_NS = st.integers(-1, 5).map(lambda ns: None if ns < 0 else ns)


def _seconds(ns: int | None) -> float | None:
    if ns is None:
        return None
    seconds = ns / NS_PER_S
    assert spec_ns(seconds) == ns
    return seconds


@st.composite
def drop_queues(draw: st.DrawFn) -> DropQueue:
    return DropQueue(
        out=draw(st.sampled_from(["fifo", "lifo"])),
        drop=draw(st.sampled_from(["head", "tail"])),
        max_len=draw(st.one_of(st.none(), st.integers(0, 5))),
    )


@st.composite
def timeout_queues(draw: st.DrawFn) -> TimeoutQueue:
    min_len = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
    return TimeoutQueue(
        timeout=_seconds(draw(TIMEOUTS_NS)),
        out=draw(st.sampled_from(["fifo", "lifo"])),
        drop=draw(st.sampled_from(["head", "tail"])),
        min_len=min_len,
        max_len=draw(st.one_of(st.none(), st.integers(min_len, 5))),
    )


# --------------------------------------------------------------------------
# The reference model (P15), written from the rules, not from the code


class Model:
    """DropQueue: a list with Q11 and Q12. TimeoutQueue: the same, and each
    check drops ``min(max(len - min_len, 0), k)`` heads, ``k`` = leading expired.

    Every operation returns ``(max_len_drops, time_drops)`` beside its result,
    so the machine can check the properties that distinguish the two.
    """

    def __init__(self, policy: Any, requests: Sequence[Request]) -> None:
        self.queue: list[Request] = list(requests)
        self._configure(policy)

    def _configure(self, policy: Any) -> None:
        self.policy = policy
        self.timed = isinstance(policy, TimeoutQueue)
        self.lifo = policy.out == "lifo"
        self.head_drop = policy.drop == "head"
        self.max_len = policy.max_len
        self.min_len = policy.min_len if self.timed else 0
        self.timeout = spec_ns(policy.timeout) if self.timed else None

    # rules
    def trim(self) -> list[Request]:  # Q12
        if self.max_len is None or len(self.queue) <= self.max_len:
            return []
        excess = len(self.queue) - self.max_len
        if self.head_drop:
            dropped, self.queue = self.queue[:excess], self.queue[excess:]
        else:
            dropped, self.queue = self.queue[-excess:], self.queue[:-excess]
        return dropped

    def check(self, now: int) -> list[Request]:  # D2 / T3 as P15 states it
        if not self.timed or self.timeout is None:
            return []
        k = 0
        while k < len(self.queue) and now - self.queue[k].send_time >= self.timeout:  # T2
            k += 1
        n = min(max(len(self.queue) - self.min_len, 0), k)
        dropped, self.queue = self.queue[:n], self.queue[n:]
        return dropped

    def wake(self) -> int | None:  # D2 / T7
        if not self.timed or self.timeout is None or len(self.queue) <= self.min_len:
            return None
        return self.queue[0].send_time + self.timeout

    # operations: each returns (max_len_drops, time_drops, extra)
    def init(self, now: int) -> tuple[list[Request], list[Request], None]:
        return self.trim(), self.check(now), None

    def config_change(self, policy: Any, now: int) -> tuple[list[Request], list[Request], None]:
        self._configure(policy)
        return self.trim(), self.check(now), None  # D4, T6

    def handle_in(self, request: Request, now: int) -> tuple[list[Request], list[Request], None]:
        size_drops: list[Request] = []
        if self.max_len is not None and len(self.queue) == self.max_len:  # Q11
            if self.max_len == 0 or not self.head_drop:  # Q10
                size_drops.append(request)
            else:
                size_drops.append(self.queue.pop(0))
                self.queue.append(request)
        else:
            self.queue.append(request)
        return size_drops, self.check(now), None  # T4

    def handle_out(self, now: int) -> tuple[list[Request], list[Request], Request | None]:
        dropped = self.check(now)  # T5
        if not self.queue:
            return [], dropped, None
        served = self.queue.pop() if self.lifo else self.queue.pop(0)  # D3 / T5
        return [], dropped, served

    def handle_timeout(self, now: int) -> tuple[list[Request], list[Request], None]:
        return [], self.check(now), None

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[list[Request], list[Request], list]:
        cancelled = [r for r in self.queue if r.tag == tag]
        self.queue = [r for r in self.queue if r.tag != tag]
        return [], self.check(now), cancelled

    def remove(self, request: Request, now: int) -> tuple[list[Request], list[Request], bool]:
        present = any(r is request for r in self.queue)
        self.queue = [r for r in self.queue if r is not request]
        return [], self.check(now), present


# --------------------------------------------------------------------------
# The state machine


class SingleQueueMachine(RuleBasedStateMachine):
    """Real policy state and :class:`Model` side by side (P15).

    Subclasses set ``start`` (the strategy of the first policy) and ``switch``
    (the strategy of policies used by terminate+re-init, Q7).
    """

    start: st.SearchStrategy[Any] = st.nothing()
    switch: st.SearchStrategy[Any] = st.one_of(drop_queues(), timeout_queues())
    TAGS = ("x", "y", "z")
    # Time passing just before an operation: none, some ns, or exactly to the last W.
    WAITS = st.one_of(st.none(), st.integers(0, 15), st.just("W"))

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.last_send = 0
        self.recorder = DropRecorder()
        self.created: list[Request] = []
        self.fate: dict[int, str] = {}  # id(request) -> how it left (P1)
        self.state: Any = None
        self.model: Model | None = None
        self.wake: int | None = None  # last W returned (Q6)
        # False while an operation is under way: a failed step leaves it False,
        # so teardown does not mask the step's error with one of its own.
        self.settled = True

    # --- helpers -----------------------------------------------------------

    def _leave(self, requests: Sequence[Request], how: str) -> None:
        for request in requests:
            assert id(request) not in self.fate, (
                f"P1: {request} left twice ({self.fate[id(request)]}, {how})"
            )
            self.fate[id(request)] = how

    def _compare(
        self,
        operation: str,
        model_result: tuple[list[Request], list[Request], Any],
        wake: int | None,
        before: list[Request],
        served: Request | None = None,
    ) -> None:
        """Check one operation's observable effects against the model."""
        assert self.model is not None
        self.settled = False
        size_drops, time_drops, _ = model_result
        calls = self.recorder.take()
        dropped = [request for request, _ in calls]
        # Q4: each dropped request answered once, at the operation's now (P4).
        assert len({id(r) for r in dropped}) == len(dropped), "Q4: a request dropped twice"
        for request, at in calls:
            assert at == self.now, "P4: drop reported with another now"
            assert at - request.send_time >= 0, "P4: negative sojourn"
        # Q13: compare sets.
        expected = {id(r) for r in size_drops + time_drops}
        assert {id(r) for r in dropped} == expected, (
            f"{operation}: dropped {dropped}, model says {size_drops + time_drops}"
        )
        assert (wake is None) or isinstance(wake, int)
        self._leave(dropped, "dropped")
        if served is not None:
            self._leave([served], "served")

        # P5: time-based drops are the oldest requests held when the check starts.
        if time_drops:
            queued_before = [r for r in before if not any(r is s for s in size_drops)]
            assert [id(r) for r in queued_before[: len(time_drops)]] == [
                id(r) for r in time_drops
            ], "P5: time-based drop is not the head"
        model = self.model
        length = len(self.state)
        # P6: time-based drops never take len below min_len (out counts what it serves).
        if time_drops:
            assert length + (served is not None) >= model.min_len, "P6"
        # P7: no request with sojourn < timeout is dropped except by max_len.
        for request in time_drops:
            assert model.timeout is not None
            assert self.now - request.send_time >= model.timeout, "P7"
        # P9: no time-based drop before the last returned W, except config_change
        # (and init, which starts a new state). A handle_in after W=None may drop
        # what min_len protected (T4): that is the one other case.
        if time_drops and operation not in ("config_change", "init"):
            if self.wake is None:
                assert operation == "handle_in", f"P9: {operation} dropped with W=None"
            else:
                assert self.now >= self.wake, f"P9: {operation} dropped before W"
        # P10
        assert wake is None or wake >= self.now, "P10: W < now"
        if not model.timed:
            assert wake is None, "D2: DropQueue W is always None"
        else:
            assert (wake is None) == (model.timeout is None or length <= model.min_len), "P10/T7"
        assert wake == model.wake(), f"{operation}: W {wake} != model {model.wake()}"
        self.wake = wake
        # P2, P11
        assert length == len(model.queue), f"{operation}: len {length} != {len(model.queue)}"
        if model.max_len is not None:
            assert length <= model.max_len, "P2: len > max_len"
        send_time = self.state.send_time()
        expected_send = model.queue[0].send_time if model.queue else None
        assert send_time == expected_send, "P11: send_time is not the oldest's"
        # P7 (second half), T9
        if model.timeout is not None and length > model.min_len:
            assert self.now - model.queue[0].send_time < model.timeout, "P7: expired head kept"
        self.settled = True

    # --- rules ---------------------------------------------------------------

    @initialize(data=st.data())
    def init(self, data: st.DataObject) -> None:
        policy = data.draw(self.start, label="policy")
        self.settled = False
        self.state, wake = policy.init([], self.now, self.recorder)
        self.model = Model(policy, [])
        self._compare("init", self.model.init(self.now), wake, [])

    def _wait(self, wait: int | str | None) -> None:
        """Let time pass before an operation: ``n`` ns, or up to the last ``W``."""
        self.settled = False
        if wait == "W":
            if self.wake is not None:
                self.now = max(self.now, self.wake)
        elif isinstance(wait, int):
            self.now += wait  # Q1

    @rule(advance=st.integers(0, 15))
    def advance(self, advance: int) -> None:
        self.now += advance  # Q1

    @rule(lag=st.sampled_from([0, 0, 0, 1, 3]), tag=st.sampled_from(TAGS), wait=WAITS)
    def handle_in(self, lag: int, tag: str, wait: int | str | None) -> None:
        self._wait(wait)
        self._enqueue(lag, tag)

    @rule(tags=st.lists(st.sampled_from(TAGS), min_size=2, max_size=4), gap=st.integers(0, 2))
    def handle_in_burst(self, tags: list[str], gap: int) -> None:
        """Several arrivals (one operation each), ``gap`` ns apart: builds longer queues."""
        for tag in tags:
            self._enqueue(0, tag)
            self.now += gap

    def _enqueue(self, lag: int, tag: str) -> None:
        assert self.model is not None
        self.settled = False
        # Q2: send_time <= now, non-decreasing in insertion order.
        send = max(self.last_send, self.now - lag)
        self.last_send = send
        request = Request(send, value=len(self.created), tag=tag)
        self.created.append(request)
        before = self.model.queue + [request]
        wake = self.state.handle_in(request, self.now)
        self._compare("handle_in", self.model.handle_in(request, self.now), wake, before)

    @rule(wait=WAITS)
    def handle_out(self, wait: int | str | None) -> None:
        self._wait(wait)
        assert self.model is not None
        before = list(self.model.queue)
        item = self.state.handle_out(self.now)
        result = self.model.handle_out(self.now)
        served = result[2]
        if served is None:
            assert item is None, f"out: got {item}, model says EMPTY"
            wake = None
        else:
            assert item is not None, f"out: EMPTY, model serves {served}"
            request, wake = item
            assert request is served, f"P3: served {request}, model serves {served}"
        self._compare("handle_out", result, wake, before, served)

    @rule(wait=WAITS)
    def handle_timeout(self, wait: int | str | None) -> None:
        self._wait(wait)
        assert self.model is not None
        before = list(self.model.queue)
        wake = self.state.handle_timeout(self.now)
        self._compare("handle_timeout", self.model.handle_timeout(self.now), wake, before)

    @rule(tag=st.sampled_from(TAGS + ("w",)), wait=WAITS, known=st.booleans())
    def handle_cancel(self, tag: str, wait: int | str | None, known: bool) -> None:
        """P12 by ``handle_cancel``, or (``known``) by ``cancel_requests``, given
        every request ever created: served, dropped and removed ones must be ignored."""
        self._wait(wait)
        assert self.model is not None
        before = list(self.model.queue)
        if known:
            candidates = [r for r in self.created if r.tag == tag]
            count, wake = self.state.cancel_requests(tag, candidates, self.now)
        else:
            count, wake = self.state.handle_cancel(tag, self.now)
        result = self.model.handle_cancel(tag, self.now)
        cancelled = result[2]
        assert count == len(cancelled), f"P12: cancel count {count} != {len(cancelled)}"
        assert type(count) is int
        # P12: cancelled requests are not answered (not among the drops).
        self._leave(cancelled, "cancelled")
        self._compare("handle_cancel", result, wake, [r for r in before if r.tag != tag])

    @precondition(lambda self: self.created)
    @rule(data=st.data(), wait=WAITS)
    def remove(self, data: st.DataObject, wait: int | str | None) -> None:
        self._wait(wait)
        assert self.model is not None
        request = data.draw(st.sampled_from(self.created), label="request")
        before = [r for r in self.model.queue if r is not request]
        wake = self.state.remove(request, self.now)
        result = self.model.remove(request, self.now)
        if result[2]:
            self._leave([request], "removed")
        self._compare("remove", result, wake, before)

    @rule(data=st.data())
    def config_change(self, data: st.DataObject) -> None:
        assert self.model is not None
        strategy = timeout_queues() if self.model.timed else drop_queues()
        policy = data.draw(strategy, label="policy")
        self.settled = False
        before = list(self.model.queue)
        wake = self.state.config_change(policy, self.now)
        self._compare("config_change", self.model.config_change(policy, self.now), wake, before)

    @rule(data=st.data())
    def reinit(self, data: st.DataObject) -> None:
        """Q7: class change as the broker does it: terminate, then init the new one."""
        assert self.model is not None
        policy = data.draw(self.switch, label="policy")
        self.settled = False
        held = self.state.terminate()
        # P3: terminate returns the survivors oldest first.
        assert [id(r) for r in held] == [id(r) for r in self.model.queue], "P3: terminate order"
        assert not self.recorder.calls, "terminate answers nobody"
        self.state, wake = policy.init(held, self.now, self.recorder)
        self.model = Model(policy, held)
        self._compare("init", self.model.init(self.now), wake, list(held))

    @invariant()
    def reads_are_idempotent(self) -> None:
        if self.state is None:
            return
        assert self.model is not None
        self.settled = False
        # P11: len() and send_time() change nothing.
        first = (len(self.state), self.state.send_time())
        assert (len(self.state), self.state.send_time()) == first
        assert not self.recorder.calls, "a read dropped something"
        # P1: every request is either held (exactly once) or has left exactly once.
        held = [id(r) for r in self.model.queue]
        assert len(set(held)) == len(held)
        assert set(held).isdisjoint(self.fate)
        assert set(held) | set(self.fate) == {id(r) for r in self.created}
        self.settled = True

    def teardown(self) -> None:
        if self.state is None or self.model is None or not self.settled:
            return  # a failed step: its own error is the one to report
        held = self.state.terminate()
        assert [id(r) for r in held] == [id(r) for r in self.model.queue], "P3: terminate order"
        self._leave(held, "terminated")
        # P1: every request left exactly once.
        assert set(self.fate) == {id(r) for r in self.created}
        assert not self.recorder.calls
