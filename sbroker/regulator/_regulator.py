"""The regulator: a concurrency valve in front of a queue (regulation.md §6).

A task asks for a *permit* to run. While the valve is open, the ask is
granted at once; while it is closed, the ask waits in the queue (whose policy
may drop it) until the valve opens, when waiting asks are granted in the
order the policy hands them out (the drain, R7). Permit holders report back:
``done`` releases the permit, ``continue_`` asks to keep running, and the
valve may answer ``Stop``. ``update`` feeds the valve a measurement, usually
a broker's relative time sent by an :class:`~sbroker.meters.UpdateMeter`.

Every operation ends in ``settle`` (R14), which reacts to the valve's new
verdict: closed→open drains the queue, open→closed notes the time, and
closed→closed lets the queue policy run its timeouts. So the invariant R3
holds after every call: while the valve is open, no ask waits.
"""

from __future__ import annotations

import functools
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Hashable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from sbroker._errors import Dropped
from sbroker._host import Host, validate_meters
from sbroker._pending import (
    Pending,
    PendingRequest,
    TagRegistry,
    TaskRequest,
    Token,
    cancel_shielded_checkpoint,
    fresh_tag,
)
from sbroker._queue_side import QueueSide, validate_policy
from sbroker._reconfiguration import PreparedPart, reconfigure
from sbroker._results import REFUSED, Drop, Go, NotFound, Stop, new_result
from sbroker._run_binding import current_thread as _current_thread
from sbroker._statistics import RegulatorStatistics, recent_window, side_statistics
from sbroker._time import NS_PER_SECOND_F, now_ns
from sbroker._time import round_float as _round
from sbroker._validators import check_factory
from sbroker.meters import Meter, Sample
from sbroker.queues import QueuePolicy, Request, TimeoutQueue
from sbroker.regulator._valve_protocol import CLOSED, OPEN, Valve, ValveState, Verdict
from sbroker.regulator.open_valve import OpenValve, OpenValveState

Result = Go | Drop
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_UNKNOWN = object()  # what popping an unknown permit from a valve's running locks gives


class Permit(Token):
    """The ``ref`` of a granted ask: unique, hashable, equal only to itself."""

    __slots__ = ()
    _label = "permit"


def validate_valve(valve: object) -> Valve:
    """A valve argument must implement :class:`Valve`."""
    check_factory("valve", valve, Valve, 2, "a valve")
    return valve  # type: ignore[return-value]


def _finished() -> Generator[None, None, None]:
    return
    yield  # a generator function, run to its end once below


def _released() -> Awaitable[None]:
    """What ``PermitHold.__aexit__`` returns: an exhausted generator-based coroutine.

    ``await`` takes such a generator as it is (no ``__await__`` call to make)
    and, as it is exhausted, finishes at once with ``None``, every time (a
    generator, unlike a coroutine, may be resumed after its end): awaiting it
    runs no Python frame.
    """
    generator = types.coroutine(_finished)()
    next(generator, None)  # type: ignore[call-overload]
    return generator


_RELEASED = _released()


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _body(made: Callable[..., Any]) -> Callable[[_Method], _Method]:
    """Run ``made`` as the decorated method, whose name, docstring and signature it takes.

    ``Regulator.ask`` and ``PermitHold.__aenter__`` share one body, and so do
    ``Regulator.done`` and ``PermitHold.__aexit__`` (made by :func:`_asking`
    and :func:`_releasing`), with no second call layer; the decorated
    definitions only document them.
    """

    def install(stub: _Method) -> _Method:
        return functools.update_wrapper(made, stub)  # type: ignore[return-value]

    return install


def _asking(*, entering: bool) -> Callable[..., Awaitable[Any]]:
    """Make ``Regulator.ask`` and ``PermitHold.__aenter__`` from one body.

    Entering is called on the :class:`PermitHold`: it takes the regulator
    and the value from the hold, raises :class:`~sbroker.Dropped` on a
    ``Drop`` and notes the permit in the hold, all in the one coroutine of
    the ask (no second layer). The unguarded open case, the hot path, runs
    ``_begin`` and ``_grant`` inlined, and an OpenValve's ``ask`` too.
    """

    async def ask(regulator: Any, value: Any = None) -> Any:
        await _checkpoint_if_cancelled()
        if entering:
            hold: PermitHold = regulator
            regulator = hold._regulator
        if regulator._guarded:
            now = regulator._begin_gated()
            if now is None:  # refused by the protector (P12)
                await cancel_shielded_checkpoint()
                if entering:
                    raise Dropped(REFUSED)
                return REFUSED
        else:  # regulator._begin(), inlined
            if regulator._run.thread != _current_thread():  # not in its run (_run_binding)
                regulator._bind()
            now = _round(regulator._clock.current_time() * NS_PER_SECOND_F)
            if regulator._timer <= now:  # R4: a wake may be due (every wake is on the timer)
                regulator._handle_timeouts(now)
        if regulator._open:  # R5: regulator._grant(now, task), inlined
            ref = Permit()
            valve = regulator._open_valve
            if valve is None:
                open_time, verdict = regulator._valve.ask(ref, _current_task(), now)
                regulator._granted += 1
                regulator._recent.append(0)  # granted at once: waited 0
                if verdict is not OPEN or regulator._valve_wake is not None:
                    regulator._settle(verdict, now)  # (else it would change nothing)
            else:  # valve.ask(ref, task, now) of the OpenValve (open_valve.py), inlined
                running = valve._running
                running[ref] = _current_task()
                open_time = valve._base
                max_size = valve._max
                if max_size is not None and len(running) >= max_size:
                    regulator._open = False  # regulator._settle(CLOSED, now), inlined
                    regulator._empty_time = now  # (an OpenValve never wakes)
                regulator._granted += 1
                regulator._recent.append(0)
            go = new_result(Go, (ref, regulator, open_time - now, 0))
            await cancel_shielded_checkpoint()
            if entering:
                hold._ref = ref
            return go
        request = TaskRequest(now, hold._value if entering else value, regulator._abandon_task)
        valve = regulator._open_valve
        if valve is None:
            regulator._enqueued(request, now)
        else:  # R6 with an OpenValve: regulator._enqueued(request, now), inlined
            queue = regulator._queue
            wake = queue.wake = queue.state.handle_in(request, now)
            if wake is not None and wake < regulator._timer:
                regulator._schedule(wake)
            max_size = valve._max
            if max_size is None or len(valve._running) < max_size:  # valve.timeout(now): open
                regulator._settle(OPEN, now, queue_checked=True)
            # (else closed -> closed, queue checked: the settle would change nothing)
        if request.result is None:  # park until answered (see TaskRequest)
            request.task = _current_task()
            await _wait_task_rescheduled(request._abort)
        else:  # dropped on arrival
            await cancel_shielded_checkpoint()
        result: Result = request.result  # type: ignore[assignment]
        if entering:
            if type(result) is Drop:
                raise Dropped(result)
            hold._ref = result[0]
        return result

    return ask


def _releasing(*, exiting: bool) -> Callable[..., Any]:
    """Make ``Regulator.done`` and ``PermitHold.__aexit__`` from one body.

    Exiting is called on the :class:`PermitHold` with the block's exception:
    it releases the hold's permit, does nothing once the regulator is closed,
    and returns an awaitable that is already finished (the release is
    synchronous). The unguarded case, the hot path, runs ``_begin`` and
    ``_settle`` inlined, and an OpenValve's ``done`` too. Exiting skips the
    run check of ``_begin``: the task that entered the hold, in this run,
    bound the regulator to this run's clock then.
    """

    def done(regulator: Any, ref: Any, exc: object = None, tb: object = None) -> Any:
        if exiting:
            hold: PermitHold = regulator
            regulator = hold._regulator
            ref = hold._ref
        valve: OpenValveState | None = regulator._open_valve
        if regulator._guarded:
            if exiting and regulator._closed:
                return _RELEASED
            now = regulator._begin()
        else:  # regulator._begin(), inlined
            # (Exiting skips the run check: the task that entered the hold, in this run,
            # bound the regulator to this run then.)
            if not exiting and regulator._run.thread != _current_thread():
                regulator._bind()
            clock = regulator._clock
            if regulator._open and valve is not None and regulator._queue.wake is None:
                # An open OpenValve's release needs no time: below max_size its base
                # stays and it stays open, and R4 has nothing due (an OpenValve never
                # wakes, an open regulator's queue is empty): no clock reading.
                found = valve._running.pop(ref, _UNKNOWN) is not _UNKNOWN
                return _RELEASED if exiting else found
            now = _round(clock.current_time() * NS_PER_SECOND_F)
            if regulator._timer <= now:  # R4: a wake may be due (every wake is on the timer)
                regulator._handle_timeouts(now)
        if valve is None:
            found, verdict = regulator._valve.done(ref, now)
            if verdict is not OPEN or not regulator._open or regulator._valve_wake is not None:
                regulator._settle(verdict, now)  # (else it would change nothing)
            return _RELEASED if exiting else found
        # valve.done(ref, now) of the OpenValve (open_valve.py), inlined
        running = valve._running
        n = len(running)
        found = ref in running
        if found:
            if n == valve._floor:
                valve._base = now
            del running[ref]
            n -= 1
        max_size = valve._max
        if max_size is not None and n >= max_size:
            regulator._settle(CLOSED, now)
        elif not regulator._open:  # regulator._settle(OPEN, now), inlined: R7
            queue = regulator._queue
            item = queue.state.handle_out(now)
            if item is None:
                queue.wake = None
                regulator._open = True
                regulator._empty_time = now
            else:
                regulator._drain(now, item)
        return _RELEASED if exiting else found

    return done


class PermitHold:
    """The async context manager :meth:`Regulator.permit` returns.

    Entering asks for a permit (raising :class:`~sbroker.Dropped` when the
    ask is dropped) and returns its ``Go``; leaving releases it, however the
    block exits, unless the regulator was closed meanwhile. A class rather
    than a generator: entering and leaving cost no generator frame, and
    entering is the ask's own coroutine.
    """

    __slots__ = ("_ref", "_regulator", "_value")
    _ref: Hashable
    _regulator: Regulator
    _value: Any

    @_body(_asking(entering=True))
    async def __aenter__(self) -> Go:  # type: ignore[empty-body]
        """Ask for the permit: its ``Go``; raises ``Dropped`` when dropped."""

    @_body(_releasing(exiting=True))
    def __aexit__(  # type: ignore[empty-body]
        self, exc_type: object, exc: object, tb: object
    ) -> Awaitable[None]:
        """Release the permit (unless the regulator was closed meanwhile)."""


class Regulator(Host):
    """Limits how many tasks run at once; the valve decides, the queue holds the rest.

    Args:
        queue: the queue policy of waiting asks (default ``TimeoutQueue()``).
        valve: the valve deciding whether one more task may start (default
            ``OpenValve()``: always, up to its ``max_size``).
        meters: meters watching this regulator, at most one of each class.

    Start :meth:`run` in a nursery (or use :func:`open_regulator`) so that
    queue timeouts, valve wake-ups and meters run. A permit ends only by
    :meth:`done`, a :meth:`continue_` answered ``Stop``, or closing: use
    :meth:`permit` to release it on every exit path.
    """

    def __init__(
        self,
        queue: QueuePolicy | None = None,
        valve: Valve | None = None,
        meters: Iterable[Meter] = (),
    ) -> None:
        queue = validate_policy("queue", TimeoutQueue() if queue is None else queue)
        valve = validate_valve(OpenValve() if valve is None else valve)
        meter_list = validate_meters(meters)
        super().__init__()
        now = self._initial_time()
        self._queue = QueueSide("ask", queue, now, self._schedule)
        self._pending = TagRegistry()
        self._valve_config = valve
        self._valve: ValveState
        self._open_valve: OpenValveState | None  # the same state when it is an OpenValve's
        state, verdict = valve.init({}, now)
        self._set_valve(state)
        self._open = verdict.status == "open"
        self._valve_wake = verdict.wake_at
        self._schedule(verdict.wake_at)
        self._schedule(self._queue.wake)  # every wake is on the timer (the hot path's R4 test)
        self._empty_time = now  # M6
        self._granted = 0  # permits granted
        self._refused = 0  # asks answered Drop at the door (protector, nb_ask while closed)
        self._recent = recent_window()  # how long recently granted asks waited
        self._abandon_task = self._abandon  # bound once: shared by every parked ask
        self._withdraw = self._cancel_pending  # bound once: every Pending.cancel
        self._init_meters(meter_list, now)

    def _set_valve(self, state: ValveState) -> None:
        """Run ``state``; the hot path inlines the ``ask`` and ``done`` of an OpenValve's."""
        self._valve = state
        self._open_valve = state if type(state) is OpenValveState else None

    # -- R14: reacting to the valve -------------------------------------------------

    def _settle(self, verdict: Verdict, now: int, *, queue_checked: bool = False) -> None:
        status, wake = verdict
        self._valve_wake = wake
        if status == "open":
            if not self._open:
                self._drain(now, self._queue.state.handle_out(now))  # schedules the wake
                return
        else:
            if self._open:
                self._open = False
                self._empty_time = now
            elif not queue_checked:
                self._queue.woke(self._queue.state.handle_timeout(now))
        if wake is not None and wake < self._timer:  # self._schedule(wake), inlined
            self._schedule(wake)

    def _drain(self, now: int, item: tuple[Request, int | None] | None) -> None:
        """R7 from ``item``, the queue's first ``handle_out``: grant waiting asks
        while the valve stays open; then schedule the valve's wake."""
        queue = self._queue
        handle_out = queue.state.handle_out
        valve_ask = self._valve.ask
        while item is not None:
            request, wake = item
            queue.wake = wake  # queue.woke(wake), inlined
            if wake is not None and wake < self._timer:
                self._schedule(wake)
            ref = Permit()
            open_time, verdict = valve_ask(ref, getattr(request, "task", None), now)
            self._valve_wake = verdict.wake_at
            sent = request.send_time
            self._granted += 1
            self._recent.append(now - sent)
            go: Go = new_result(Go, (ref, self, open_time - sent, now - sent))
            request.answer(go)  # type: ignore[attr-defined]
            if verdict.status == "closed":
                self._open = False
                break
            item = handle_out(now)
        else:
            queue.wake = None
            self._open = True
            self._empty_time = now
        wake = self._valve_wake
        if wake is not None and wake < self._timer:
            self._schedule(wake)

    def _catch_up(self, now: int) -> None:
        """R4: run overdue valve and queue work before handling a call."""
        self._called(now)
        deadline = self._deadline()
        if deadline is not None and deadline <= now:
            self._settle(self._valve.timeout(now), now)

    def _begin(self) -> int:
        """Start a call: closed check, nudge (M3), overdue work (R4); return ``now``.

        Unguarded (open, no protector, no nudge due), the checks reduce to
        one clock reading and the overdue test of R4: the hot path.
        """
        if self._guarded:
            self._check_open()
            now = self._now()
            self._catch_up(now)
            return now
        if self._run.thread != _current_thread():  # self._now(), inlined
            self._bind()
        now = _round(self._clock.current_time() * NS_PER_SECOND_F)
        valve, queue = self._valve_wake, self._queue.wake  # self._deadline(), inlined
        if (valve is not None and valve <= now) or (queue is not None and queue <= now):
            self._settle(self._valve.timeout(now), now)
        return now

    def _begin_gated(self) -> int | None:
        """:meth:`_begin` for a gated call (P12): ``None`` when the protector drops it."""
        if self._guarded:
            self._check_open()
            protector = self._protector
            if protector is not None and not protector.admit("ask"):
                self._refused += 1
                return None
        return self._begin()

    # -- asking for a permit ------------------------------------------------------------

    def _grant(self, now: int, owner: Any) -> Go:
        """R5: the valve is open; grant at once."""
        ref = Permit()
        open_time, verdict = self._valve.ask(ref, owner, now)
        self._granted += 1
        self._recent.append(0)  # granted at once: waited 0
        if verdict is not OPEN or not self._open or self._valve_wake is not None:
            self._settle(verdict, now)  # (else it would change nothing)
        return new_result(Go, (ref, self, open_time - now, 0))

    def _enqueued(self, request: Request, now: int) -> None:
        """R6: queue an ask, then let the valve re-evaluate."""
        self._queue.enqueue(request, now)
        self._settle(self._valve.timeout(now), now, queue_checked=True)

    @_body(_asking(entering=False))
    async def ask(self, value: Any = None) -> Result:  # type: ignore[empty-body]
        """Ask for a permit: ``Go`` (its ``ref`` is the permit) or ``Drop``.

        Waits in the queue while the valve is closed. A task cancelled while
        waiting leaves the queue and gets no permit. The permit must be
        released with :meth:`done` (or use :meth:`permit`).
        """

    def _abandon(self, request: Request) -> None:
        """R12: a waiting task was cancelled."""
        now = now_ns()
        self._queue.woke(self._queue.state.remove(request, now))
        self._settle(self._valve.timeout(now), now)

    def nb_ask(self, value: Any = None) -> Result:
        """A permit if the valve is open now, else ``Drop(0)``; never queues."""
        now = self._begin_gated()
        if now is None:
            return REFUSED
        if self._open:
            return self._grant(now, None)
        self._settle(self._valve.timeout(now), now)  # R6
        self._refused += 1
        return REFUSED

    def async_ask(self, value: Any = None, *, tag: Hashable = None) -> Pending:
        """Ask without blocking: a :class:`~sbroker.Pending`, settled at once if open."""
        result = self._ask_async(value, tag, dynamic=False)
        assert isinstance(result, Pending)
        return result

    def dynamic_ask(self, value: Any = None, *, tag: Hashable = None) -> Result | Pending:
        """``Go`` if the valve is open, else as :meth:`async_ask`."""
        return self._ask_async(value, tag, dynamic=True)

    def _ask_async(self, value: Any, tag: Hashable, dynamic: bool) -> Result | Pending:
        tag = fresh_tag(tag)
        now = self._begin_gated()
        if now is None:
            return REFUSED if dynamic else Pending.settled(tag, REFUSED)
        if self._open:
            go = self._grant(now, None)
            return go if dynamic else Pending.settled(tag, go)
        pending = Pending(tag)
        request = PendingRequest(now, value, pending, self._pending, self._withdraw)
        self._enqueued(request, now)
        request.register()
        return pending

    def _cancel_pending(self, request: PendingRequest) -> bool:  # bound once: _withdraw
        """``Pending.cancel``: ``True`` only if the request was still queued and is now removed.

        Overdue valve and queue work runs first (R4); if it answers this very
        request (a grant or a drop), the pending keeps that answer and the
        cancel returns ``False``.
        """
        self._begin()
        if request.pending.result is not None:
            return False
        self._pending.cancel(request)
        self._abandon(request)
        return True

    def permit(self, value: Any = None) -> PermitHold:
        """Hold a permit for the block: ``async with regulator.permit() as go:``.

        The permit is released however the block exits (unless the regulator
        was closed meanwhile). Raises :class:`~sbroker.Dropped` (carrying the
        ``Drop``) if the ask is dropped.
        """
        hold = PermitHold()  # no __init__ frame
        hold._regulator = self
        hold._value = value
        return hold

    # -- permit holders --------------------------------------------------------------------

    def continue_(self, ref: Hashable) -> Go | Stop | NotFound:
        """R8: may the holder of permit ``ref`` keep running?

        ``Go`` (same ref): keep running. ``Stop``: the permit has been
        released and the task must stop. ``NotFound``: unknown permit.
        Decided by the valve at once, ahead of every waiting ask.
        """
        now = self._begin()
        kind, open_time, verdict = self._valve.continue_(ref, now)
        self._settle(verdict, now)
        if kind == "go":
            assert open_time is not None
            return Go(ref, self, open_time - now, 0)
        return Stop(0) if kind == "done" else NotFound(0)

    @_body(_releasing(exiting=False))
    def done(self, ref: Hashable) -> bool:  # type: ignore[empty-body]
        """R9: release permit ``ref``; ``False`` if it is unknown (or released already)."""

    def update(self, relative_time_ns: int) -> None:
        """R10: feed the valve a measurement in ns (e.g. a broker's relative time)."""
        if not isinstance(relative_time_ns, int) or isinstance(relative_time_ns, bool):
            raise TypeError(f"relative_time_ns must be an int of ns, got {relative_time_ns!r}")
        now = self._begin()
        self._settle(self._valve.update(relative_time_ns, now), now)

    def cancel(self, tag: Hashable) -> int:
        """R11: remove every waiting async ask tagged ``tag``; return how many."""
        now = self._begin()
        count = 0
        if not self._open:
            count, wake = self._pending.withdraw(self._queue.state, tag, now)
            self._queue.woke(wake)
        self._pending.cancel_tag(tag)
        self._settle(self._valve.timeout(now), now)
        return count

    def len(self) -> int:
        """Asks waiting (0 once closed)."""
        if self._closed:
            return 0
        self._catch_up(self._now())
        return len(self._queue.state)

    def size(self) -> int:
        """Permits held (0 once closed)."""
        if self._closed:
            return 0
        self._catch_up(self._now())
        return self._valve.size()

    # -- configuration ---------------------------------------------------------------------

    def change_config(
        self,
        *,
        queue: QueuePolicy | None = None,
        valve: Valve | None = None,
        meters: Iterable[Meter] | None = None,
    ) -> None:
        """R17: reconfigure live; ``None`` keeps a part.

        No waiting ask is lost (queues.md Q7); permits are never revoked: a
        valve of the same class keeps its state, another class takes over the
        running permits, and above a new ``max_size`` the valve stays closed
        and ``continue_`` answers ``Stop``. Invalid arguments raise
        ``TypeError``/``ValueError`` naming them, and nothing changes: every
        part is prepared before any is applied.
        """
        self._check_open()
        if queue is not None:
            validate_policy("queue", queue)
        if valve is not None:
            validate_valve(valve)
        meter_list = None if meters is None else validate_meters(meters)
        now = self._begin()
        prepares: list[Callable[[], PreparedPart]] = []
        if queue is not None:
            prepares.append(lambda: self._queue.prepare(queue, now))
        valve_change = None if valve is None else ValveChange(self, valve, now)
        if valve_change is not None:
            prepares.append(valve_change.prepare)
        if meter_list is not None:
            prepares.append(lambda: self._prepare_meters(meter_list, now))
        try:
            reconfigure(prepares)
        finally:  # R3 holds after a failed change too
            verdict = None if valve_change is None else valve_change.verdict
            self._settle(self._valve.timeout(now) if verdict is None else verdict, now)

    def statistics(self) -> RegulatorStatistics:
        """A snapshot: permits held, waiting asks, go/drop totals, recent waits, lag."""
        closed = self._closed
        return RegulatorStatistics(
            size=0 if closed else self._valve.size(),
            ask=side_statistics(
                0 if closed else len(self._queue.state),
                self._granted,
                self._queue.drops + self._refused,
                self._recent,
            ),
            scheduling_lag=self._last_lag,
            alarms=self._alarms,
        )

    def config(self) -> tuple[QueuePolicy, Valve, tuple[Meter, ...]]:
        """The running configuration: ``(queue, valve, meters)``."""
        return self._queue.policy, self._valve_config, tuple(m for m, _ in self._meters)

    # -- host hooks ------------------------------------------------------------------------

    def _deadline(self) -> int | None:
        valve, queue = self._valve_wake, self._queue.wake
        if valve is None:
            return queue
        return valve if queue is None else min(valve, queue)

    def _handle_timeouts(self, now: int) -> None:
        deadline = self._deadline()
        if deadline is not None and deadline <= now:
            self._settle(self._valve.timeout(now), now)

    def _sample(self, now: int, lag: int) -> Sample:
        """M6: open: how long the valve has stood open unused; closed: as M5 on the queue."""
        if self._open:
            open_time = self._valve.open_time()
            reference = now if open_time is None else min(open_time, now)
            relative = reference - now
            self._empty_time = reference
        else:
            oldest = self._queue.state.send_time()
            reference = self._empty_time if oldest is None else oldest
            relative = now - reference
            self._empty_time = reference
        return Sample(now, lag, 0, relative, len(self._queue.state), 0)

    def _queue_sides(self) -> tuple[QueueSide, ...]:
        return (self._queue,)

    def __repr__(self) -> str:
        if self._closed:
            return f"<Regulator closed valve={self._valve_config!r}>"
        return (
            f"<Regulator {'open' if self._open else 'closed'} size={self._valve.size()} "
            f"len={len(self._queue.state)} valve={self._valve_config!r}>"
        )


class ValveChange:
    """A prepared valve reconfiguration (R17); its commit calls the valve's own code.

    Preparing tries the new valve on a trial state, so that a configuration
    it cannot take fails before anything changes. The commit keeps the state
    (same class) or hands the running permits over (another class); if the
    hand-over still fails, the running valve is rebuilt with the same permits.
    """

    __slots__ = ("_now", "_regulator", "_valve", "verdict")
    fallible = True

    def __init__(self, regulator: Regulator, valve: Valve, now: int) -> None:
        self._regulator = regulator
        self._valve = valve
        self._now = now
        self.verdict: Verdict | None = None

    def prepare(self) -> ValveChange:
        """Try the new valve on a trial state holding no permits."""
        self._valve.init({}, self._now)
        return self

    def commit(self) -> None:
        """Apply the new valve."""
        regulator, valve, now = self._regulator, self._valve, self._now
        if type(valve) is type(regulator._valve_config):
            self.verdict = regulator._valve.config_change(valve, now)
        else:
            running = regulator._valve.terminate()
            try:
                state, self.verdict = valve.init(running, now)
            except BaseException:
                state, _verdict = regulator._valve_config.init(running, now)
                regulator._set_valve(state)
                raise
            regulator._set_valve(state)
        regulator._valve_config = valve

    def abandon(self) -> None:
        """Nothing was applied."""


@asynccontextmanager
async def open_regulator(
    queue: QueuePolicy | None = None,
    valve: Valve | None = None,
    meters: Iterable[Meter] = (),
) -> AsyncIterator[Regulator]:
    """Create a :class:`Regulator`, run it for the block, close it after."""
    regulator = Regulator(queue=queue, valve=valve, meters=meters)
    async with trio.open_nursery() as nursery:
        await nursery.start(regulator.run)
        try:
            yield regulator
        finally:
            regulator.close()
