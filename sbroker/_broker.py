"""The broker: one-to-one matching of ``ask`` and ``ask_r`` requests.

Matching happens in the calling task: a request takes the counterparty its
policy hands out from the other queue, or waits in its own queue, parked with
``trio.lowlevel.wait_task_rescheduled`` until a counterparty answers it, its
queue's policy drops it, or it is cancelled (the abort function removes it
from its queue, so a cancelled caller is never matched). The background task
(:meth:`Broker.run`) only handles the policies' deadlines and the meters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from sbroker._host import Host, validate_meters
from sbroker._pending import (
    WOKEN,
    Pending,
    PendingRequest,
    TagRegistry,
    TaskRequest,
    cancel_shielded_checkpoint,
    fresh_tag,
)
from sbroker._queue_side import QueueSide, validate_policy
from sbroker._reconfiguration import PreparedPart, reconfigure
from sbroker._reply import call, serve
from sbroker._results import REFUSED, Drop, Go, new_result
from sbroker._run_binding import current_thread as _current_thread
from sbroker._statistics import BrokerStatistics, recent_window, side_statistics
from sbroker._time import NS_PER_SECOND_F
from sbroker._time import round_float as _round
from sbroker.meters import Meter, Sample
from sbroker.queues import QueuePolicy, Request, TimeoutQueue
from sbroker.queues._protocol import next_sequence

Result = Go | Drop
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_reschedule = trio.lowlevel.reschedule
_new_object = object.__new__


def _blocking_request(name: str, doc: str) -> Callable[[Broker, Any], Awaitable[Result]]:
    """Make ``Broker.ask``/``Broker.ask_r``: the hot path, written once for both sides.

    One clock reading; one checkpoint on an immediate match, as trio's
    channels make (``checkpoint_if_cancelled`` before, a cancel-shielded
    schedule point after), so a match once made is never undone.
    """

    async def request(self: Broker, value: Any = None) -> Result:
        await _checkpoint_if_cancelled()
        if self._run.thread != _current_thread():  # self._now(), inlined
            self._bind()
        now = _round(self._clock.current_time() * NS_PER_SECOND_F)
        side, other = self._sides[name]
        if self._guarded and not self._admit(side, now):
            await cancel_shielded_checkpoint()
            return REFUSED
        item = other.state.handle_out(now)
        if item is not None:  # self._matched(other, item, value, now), inlined
            counterparty, wake = item
            other.wake = wake
            if wake is not None and wake < self._timer:
                self._schedule(wake)
            waited = now - counterparty.send_time
            self._matches += 1
            self._recent.append(waited if other is self._ask else -waited)  # > 0: ask waited
            ref = counterparty.seq  # unique: the arrival number serves as the match's ref
            answer = new_result(Go, (ref, value, waited, waited))
            if type(counterparty) is TaskRequest:  # counterparty.answer(answer), inlined
                counterparty.result = answer
                task = counterparty.task
                if task is not None:
                    counterparty.task = None
                    _reschedule(task, WOKEN)
            else:
                counterparty.answer(answer)  # type: ignore[attr-defined]
            go = new_result(Go, (ref, counterparty.value, -waited, 0))
            await cancel_shielded_checkpoint()
            return go
        other.wake = None  # nobody to hand out: note it (M5)
        if self._waiting is not side:
            self._waiting = side
            self._empty_time = now
        request = _new_object(TaskRequest)  # TaskRequest(now, value, side.abandon), inlined
        request.send_time = now
        request.value = value
        request.seq = next_sequence()
        request.abandon = side.abandon
        request.task = None
        request.result = None
        side.wake = wake = side.state.handle_in(request, now)  # side.enqueue, inlined
        if wake is not None and wake < self._timer:
            self._schedule(wake)
        if request.result is None:  # park until answered (see TaskRequest)
            request.task = _current_task()
            await _wait_task_rescheduled(request._abort)
        else:  # answered already: dropped on arrival
            await cancel_shielded_checkpoint()
        return request.result  # type: ignore[return-value]

    request.__name__ = request.__qualname__ = name
    request.__doc__ = doc
    return request


class Broker(Host):
    """Matches requests made with :meth:`ask` to requests made with :meth:`ask_r`.

    Args:
        ask: the queue policy of the ask queue (default ``TimeoutQueue()``).
        ask_r: the queue policy of the ask_r queue (default ``TimeoutQueue()``).
        meters: meters watching this broker, at most one of each class.

    The broker matches requests in the calling task; start :meth:`run` in a
    nursery (or use :func:`open_broker`) so that policy timeouts and meters
    run. Every request is answered exactly once: ``Go``, ``Drop``, an
    explicit cancel, or the caller's own trio cancellation.
    """

    def __init__(
        self,
        ask: QueuePolicy | None = None,
        ask_r: QueuePolicy | None = None,
        meters: Iterable[Meter] = (),
    ) -> None:
        ask = validate_policy("ask", TimeoutQueue() if ask is None else ask)
        ask_r = validate_policy("ask_r", TimeoutQueue() if ask_r is None else ask_r)
        meter_list = validate_meters(meters)
        super().__init__()
        now = self._initial_time()
        self._ask = QueueSide("ask", ask, now, self._schedule)
        self._ask_r = QueueSide("ask_r", ask_r, now, self._schedule)
        self._sides = {"ask": (self._ask, self._ask_r), "ask_r": (self._ask_r, self._ask)}
        for side in (self._ask, self._ask_r):
            side.withdraw = partial(self._withdraw, side)
        self._pending = TagRegistry()
        self._matches = 0  # every match answers one ask and one ask_r Go
        self._recent = recent_window()  # waits of recent matches: > 0 ask waited, < 0 ask_r
        self._waiting = self._ask_r  # M5: the side that last found the other empty
        self._empty_time = now
        self._init_meters(meter_list, now)

    # -- matching ----------------------------------------------------------------

    def _admit(self, side: QueueSide, now: int) -> bool:
        """The guarded path of a gated call: closed check, PIE gate (P11), nudge (M3).

        ``False`` means the protector refused the call; it counts as a drop of ``side``.
        """
        self._check_open()
        protector = self._protector
        if protector is not None and not protector.admit(side.name):
            side.drops += 1
            return False
        self._called(now)
        return True

    def _match(self, side: QueueSide, other: QueueSide, value: Any, now: int) -> Go | None:
        """Match with the counterparty ``other``'s policy hands out, if any."""
        item = other.state.handle_out(now)
        if item is None:
            other.wake = None  # nobody to hand out: note it (M5)
            if self._waiting is not side:
                self._waiting = side
                self._empty_time = now
            return None
        return self._matched(other, item, value, now)

    def _matched(
        self, other: QueueSide, item: tuple[Request, int | None], value: Any, now: int
    ) -> Go:
        """Answer the request ``other`` handed out; return the caller's ``Go``."""
        request, wake = item
        other.wake = wake  # other.woke(wake), inlined: the hot path
        if wake is not None and wake < self._timer:
            self._schedule(wake)
        waited = now - request.send_time
        self._matches += 1
        self._recent.append(waited if other is self._ask else -waited)  # > 0: ask waited
        # The waiting request's arrival number is unique, so it serves as the match's ref.
        ref = request.seq
        request.answer(new_result(Go, (ref, value, waited, waited)))  # type: ignore[attr-defined]
        return new_result(Go, (ref, request.value, -waited, 0))

    def _request_nowait(self, side: QueueSide, other: QueueSide, value: Any) -> Result:
        now = self._now()
        if self._guarded and not self._admit(side, now):
            return REFUSED
        go = self._match(side, other, value, now)
        if go is None:
            side.drops += 1
            return REFUSED
        return go

    def _request_async(
        self, side: QueueSide, other: QueueSide, value: Any, tag: Hashable, dynamic: bool
    ) -> Result | Pending:
        tag = fresh_tag(tag)
        now = self._now()
        if self._guarded and not self._admit(side, now):
            return REFUSED if dynamic else Pending.settled(tag, REFUSED)
        go = self._match(side, other, value, now)
        if go is not None:
            return go if dynamic else Pending.settled(tag, go)
        pending = Pending(tag)
        request = PendingRequest(now, value, pending, self._pending, side.withdraw)
        side.enqueue(request, now)
        request.register()
        return pending

    def _withdraw(self, side: QueueSide, request: PendingRequest) -> bool:
        """``Pending.cancel`` of a request queued in ``side`` (bound once per side)."""
        self._check_open()
        now = self._now()
        self._called(now)
        self._pending.cancel(request)
        side.woke(side.state.remove(request, now))
        return True

    _ASK_DOC = """Request a match with an ``ask_r`` caller; wait in the ask queue if none waits.

        Returns ``Go`` (``value`` is the counterparty's value) or ``Drop``. If
        the calling task is cancelled while waiting, its request leaves the
        queue and is never matched; once matched, the ``Go`` is returned.
        """
    _ASK_R_DOC = """The mirror image of :meth:`ask`: match with an ``ask`` caller."""

    if TYPE_CHECKING:  # the signatures; the bodies are made by _blocking_request

        async def ask(self, value: Any = None) -> Result:
            """See ``_ASK_DOC``."""

        async def ask_r(self, value: Any = None) -> Result:
            """See ``_ASK_R_DOC``."""

    else:
        ask = _blocking_request("ask", _ASK_DOC)
        ask_r = _blocking_request("ask_r", _ASK_R_DOC)

    async def call(self, value: Any = None) -> Any:
        """Request/reply: send ``value`` to a worker and return its reply.

        The request is an :meth:`ask` carrying a :class:`~sbroker.Job`; a worker
        running :meth:`serve` (or answering the job itself) replies. Raises
        :class:`~sbroker.Dropped` if the ask queue drops the request and
        :class:`~sbroker.WorkerFailed` if the worker raised or was cancelled.
        If the caller is cancelled while the worker runs, the worker's handler
        is cancelled for this job and the worker serves on.
        """
        return await call(self, value)

    async def serve(self, handler: Callable[[Any], Awaitable[Any]], value: Any = None) -> None:
        """A worker loop: match with callers of :meth:`call`, reply with ``await handler(v)``.

        Each job's ``v`` is the caller's value; ``value`` is what this worker
        offers with :meth:`ask_r`. An exception from ``handler`` is answered
        to its caller as :class:`~sbroker.WorkerFailed` and the worker serves
        on; if the worker is cancelled mid-job, the caller gets
        ``WorkerFailed`` too. Returns when the broker closes.
        """
        await serve(self, handler, value)

    def nb_ask(self, value: Any = None) -> Result:
        """Match at once with a waiting ``ask_r`` request, else ``Drop(0)``; never queues."""
        return self._request_nowait(self._ask, self._ask_r, value)

    def nb_ask_r(self, value: Any = None) -> Result:
        """The mirror image of :meth:`nb_ask`."""
        return self._request_nowait(self._ask_r, self._ask, value)

    def async_ask(self, value: Any = None, *, tag: Hashable = None) -> Pending:
        """Request a match without blocking: return a :class:`~sbroker.Pending`.

        If an ``ask_r`` request waits, the pending is already settled with
        ``Go``; otherwise the request waits in the ask queue under ``tag``
        (a fresh unique tag if ``None``) until answered or cancelled.
        """
        result = self._request_async(self._ask, self._ask_r, value, tag, dynamic=False)
        assert isinstance(result, Pending)
        return result

    def async_ask_r(self, value: Any = None, *, tag: Hashable = None) -> Pending:
        """The mirror image of :meth:`async_ask`."""
        result = self._request_async(self._ask_r, self._ask, value, tag, dynamic=False)
        assert isinstance(result, Pending)
        return result

    def dynamic_ask(self, value: Any = None, *, tag: Hashable = None) -> Result | Pending:
        """``Go`` if a match is immediate, else as :meth:`async_ask`.

        Returns ``Drop(0)`` directly when a PIE meter refuses the request.
        """
        return self._request_async(self._ask, self._ask_r, value, tag, dynamic=True)

    def dynamic_ask_r(self, value: Any = None, *, tag: Hashable = None) -> Result | Pending:
        """The mirror image of :meth:`dynamic_ask`."""
        return self._request_async(self._ask_r, self._ask, value, tag, dynamic=True)

    def cancel(self, tag: Hashable) -> int:
        """Remove every still-queued async request tagged ``tag``; return how many.

        Their pendings are marked cancelled (``wait()`` raises
        :class:`~sbroker.RequestCancelled`). Blocking requests have no tag and
        are never reached.
        """
        self._check_open()
        now = self._now()
        self._called(now)
        removed = 0
        for side in (self._ask, self._ask_r):
            count, wake = self._pending.withdraw(side.state, tag, now)
            side.woke(wake)
            removed += count
        self._pending.cancel_tag(tag)
        return removed

    def len(self) -> int:
        """Requests waiting in the ask queue (0 once closed)."""
        return self._length(self._ask)

    def len_r(self) -> int:
        """Requests waiting in the ask_r queue (0 once closed)."""
        return self._length(self._ask_r)

    def _length(self, side: QueueSide) -> int:
        if self._closed:
            return 0
        self._called(self._now())
        return len(side.state)

    # -- configuration -----------------------------------------------------------------

    def change_config(
        self,
        *,
        ask: QueuePolicy | None = None,
        ask_r: QueuePolicy | None = None,
        meters: Iterable[Meter] | None = None,
    ) -> None:
        """Reconfigure the running broker; ``None`` keeps a part as it is.

        Every queued request is kept, in order: a policy of the same class
        keeps its state with the new parameters, a policy of another class
        takes the queued requests over. Only requests the new policy's own
        rules drop at once (a shorter timeout already passed, a lower
        ``max_len``) leave, answered ``Drop``. An invalid argument raises
        ``TypeError``/``ValueError`` naming it, a key function's own
        exception propagates, and nothing is changed: every part is prepared
        before any is applied (see "When user code raises" in the docs).
        """
        self._check_open()
        if ask is not None:
            validate_policy("ask", ask)
        if ask_r is not None:
            validate_policy("ask_r", ask_r)
        meter_list = None if meters is None else validate_meters(meters)
        now = self._now()
        self._called(now)
        prepares: list[Callable[[], PreparedPart]] = []
        if ask is not None:
            prepares.append(lambda: self._ask.prepare(ask, now))
        if ask_r is not None:
            prepares.append(lambda: self._ask_r.prepare(ask_r, now))
        if meter_list is not None:
            prepares.append(lambda: self._prepare_meters(meter_list, now))
        reconfigure(prepares)

    def statistics(self) -> BrokerStatistics:
        """A snapshot: waiting counts, go/drop totals, recent sojourn percentiles, lag."""
        ask, ask_r, recent, matches = self._ask, self._ask_r, self._recent, self._matches
        return BrokerStatistics(
            ask=side_statistics(len(ask.state), matches, ask.drops, [max(w, 0) for w in recent]),
            ask_r=side_statistics(
                len(ask_r.state), matches, ask_r.drops, [max(-w, 0) for w in recent]
            ),
            scheduling_lag=self._last_lag,
            alarms=self._alarms,
        )

    def config(self) -> tuple[QueuePolicy, QueuePolicy, tuple[Meter, ...]]:
        """The running configuration: ``(ask, ask_r, meters)``."""
        return self._ask.policy, self._ask_r.policy, tuple(m for m, _ in self._meters)

    # -- host hooks ----------------------------------------------------------------------

    def _deadline(self) -> int | None:
        ask, ask_r = self._ask.wake, self._ask_r.wake
        if ask is None:
            return ask_r
        return ask if ask_r is None else min(ask, ask_r)

    def _handle_timeouts(self, now: int) -> None:
        for side in (self._ask, self._ask_r):
            if side.wake is not None and side.wake <= now:
                side.woke(side.state.handle_timeout(now))

    def _sample(self, now: int, lag: int) -> Sample:
        """M4/M5: the broker's sample; the relative time looks at the waiting side."""
        waiting = self._waiting
        oldest = waiting.state.send_time()
        reference = self._empty_time if oldest is None else oldest
        relative = now - reference if waiting is self._ask else reference - now
        self._empty_time = reference
        return Sample(now, lag, 0, relative, len(self._ask.state), len(self._ask_r.state))

    def _queue_sides(self) -> tuple[QueueSide, ...]:
        return self._ask, self._ask_r

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"len={len(self._ask.state)}"
        if not self._closed:
            state += f" len_r={len(self._ask_r.state)}"
        return f"<Broker {state} ask={self._ask.policy!r} ask_r={self._ask_r.policy!r}>"


@asynccontextmanager
async def open_broker(
    ask: QueuePolicy | None = None,
    ask_r: QueuePolicy | None = None,
    meters: Iterable[Meter] = (),
) -> AsyncIterator[Broker]:
    """Create a :class:`Broker`, run it in a nursery for the block, close it after.

    On leaving the block every still-queued request is answered ``Drop``.
    """
    broker = Broker(ask=ask, ask_r=ask_r, meters=meters)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        try:
            yield broker
        finally:
            broker.close()
