"""What brokers and regulators share: the background task, meters, alarms, the gate.

A host keeps its policies' wake times and one background task (``run``) that
sleeps until the earliest of them (regulation.md M3). The trio cancel scope
the task sleeps in is only ever moved *earlier* by the hot path (a float
compare, and rarely a heap push inside trio); when the task wakes it
recomputes the true earliest deadline and goes back to sleep if that lies in
the future. A wake that finds work due handles the due timeouts, then feeds
every meter one :class:`~sbroker.meters.Sample`. How late the task woke is
the host's scheduling lag, the sample's ``queue_delay``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from sbroker._errors import BrokerClosed
from sbroker._queue_side import QueueSide
from sbroker._reconfiguration import attempt, raise_first
from sbroker._run_binding import UNBOUND, current_run_mark, current_thread
from sbroker._time import NS_PER_SECOND_F, round_float, to_trio_time
from sbroker._units import NS_PER_SECOND
from sbroker._validators import check_factory
from sbroker.meters import Meter, MeterState, Protector, Sample
from sbroker.meters.better import BetterMeterState

logger = logging.getLogger("sbroker")


def validate_meters(meters: Iterable[Any]) -> tuple[Meter, ...]:
    """Check a meter configuration: meter objects, at most one per class (M2)."""
    if isinstance(meters, (str, bytes)) or not isinstance(meters, Iterable):
        raise TypeError(f"meters must be an iterable of meters, got {meters!r}")
    result = tuple(meters)
    seen: set[type] = set()
    for meter in result:
        check_factory("meters", meter, Meter, 2, "meters")
        if type(meter) in seen:
            raise ValueError(f"meters: at most one {type(meter).__name__} per host")
        seen.add(type(meter))
    return result


class _NullHost:
    """The host given to a trial meter state: alarms and protectors go nowhere."""

    __slots__ = ()

    def set_alarm(self, description: str, active: bool) -> None:
        """Ignore the alarm."""

    def set_protector(self, protector: Protector | None) -> None:
        """Ignore the protector."""


class MeterChange:
    """A prepared meter reconfiguration (regulation.md M2).

    New-only meters were initialised with the host recording what they did to
    it; kept meters' new parameters were tried on a trial state.
    """

    __slots__ = ("_effects", "_host", "_meters", "_now", "_started")
    fallible = False

    def __init__(
        self,
        host: Host,
        meters: Sequence[Meter],
        started: dict[type, tuple[MeterState, int | None]],
        effects: list[Callable[[], None]],
        now: int,
    ) -> None:
        self._host = host
        self._meters = meters
        self._started = started
        self._effects = effects
        self._now = now

    def commit(self) -> None:
        """Close old-only meters, install the new ones, change kept ones (M2).

        Every step runs; the first exception a meter raises is re-raised after.
        """
        host, meters, started, now = self._host, self._meters, self._started, self._now
        old = {type(meter): state for meter, state in host._meters}
        new_types = {type(meter) for meter in meters}
        errors: list[Exception] = []
        for meter_type, state in old.items():
            if meter_type not in new_types:
                attempt(state.close, None, errors)
        for effect in self._effects:
            effect()
        wakes = [wake for _state, wake in started.values()]
        for meter in meters:
            if type(meter) not in started:
                try:
                    wakes.append(old[type(meter)].config_change(meter, now))
                except Exception as exc:
                    errors.append(exc)
        host._meters = [
            (m, started[type(m)][0] if type(m) in started else old[type(m)]) for m in meters
        ]
        host._meter_wake = _earliest(wakes, now)
        if host._meters and host._nudge_at is None:
            host._nudge_armed = True
        host._update_guard()
        host._schedule(host._meter_wake)
        raise_first(errors)

    def abandon(self) -> None:
        """Nothing was installed: the new meter states are simply dropped."""


class Host:
    """Base of :class:`~sbroker.Broker` and :class:`~sbroker.regulator.Regulator`.

    Subclasses implement ``_deadline()`` (their policies' earliest wake time),
    ``_handle_timeouts(now)``, ``_sample(now, lag)`` and ``_queue_sides()``.
    """

    def __init__(self) -> None:
        # The trio run this host belongs to (UNBOUND until first used in one) and its clock.
        self._run = current_run_mark() or UNBOUND
        # None while unbound: read only after the run check (it binds or raises).
        self._clock: trio.abc.Clock = self._run.clock  # type: ignore[assignment]
        self._staged_effects: list[Callable[[], None]] | None = None  # M2, while preparing
        self._closed = False
        self._running = False
        self._timer = math.inf  # what the sleeping task's cancel scope is set to (ns)
        self._timer_scope: trio.CancelScope | None = None
        self._run_scope: trio.CancelScope | None = None
        self._meters: list[tuple[Meter, MeterState]] = []
        self._meter_wake: int | None = None
        self._nudge_at: int | None = None
        self._nudge_armed = False  # M3: the next call after a meter pass nudges
        self._protector: Protector | None = None
        self._alarms: frozenset[str] = frozenset()
        # One flag for the hot path: closed, a protector installed, or a nudge due.
        self._guarded = False
        self._last_lag = 0  # how late the background task woke last time (ns)

    def _update_guard(self) -> None:
        self._guarded = self._closed or self._protector is not None or self._nudge_armed

    # -- what meters may do (MeterHost) --------------------------------------

    def set_alarm(self, description: str, active: bool) -> None:
        """Record an alarm set or cleared by a meter (regulation.md M8)."""
        staged = self._staged_effects
        if staged is not None:
            staged.append(lambda: self.set_alarm(description, active))
            return
        if active:
            self._alarms = self._alarms | {description}
        else:
            self._alarms = self._alarms - {description}

    def set_protector(self, protector: Protector | None) -> None:
        """Install or remove the admission gate of a PIE meter (P11, P13)."""
        staged = self._staged_effects
        if staged is not None:
            staged.append(lambda: self.set_protector(protector))
            return
        self._protector = None if self._closed else protector
        self._update_guard()

    def alarms(self) -> frozenset[str]:
        """The descriptions of the active alarms, e.g. ``{"message_queue_slow"}``."""
        return self._alarms

    def estimate(self, side: str) -> int | None:
        """The sojourn estimate (ns) a :class:`~sbroker.meters.BetterMeter` publishes for
        ``side`` (``"ask"``/``"ask_r"``), or ``None`` without one (regulation.md B2).

        Not on the matching path: it reads the meter's latest published value.
        """
        for _meter, state in self._meters:
            if isinstance(state, BetterMeterState):
                return state.estimate(side)
        if side not in ("ask", "ask_r"):
            raise ValueError(f"side must be 'ask' or 'ask_r', got {side!r}")
        return None

    # -- time: the clock of the run the host belongs to -------------------------

    def _initial_time(self) -> int:
        """The host's clock now; 0 when it is not bound to a run yet."""
        clock = self._clock
        return 0 if clock is None else round(clock.current_time() * NS_PER_SECOND)

    def _now(self) -> int:
        """The current time (ns) of the host's trio run; binds an unbound host to this run.

        Raises ``RuntimeError`` outside ``trio.run`` or in another run than the
        host's: times from two clocks cannot be compared.
        """
        if self._run.thread != current_thread():  # not in the host's run (_run_binding)
            self._bind()
        return round_float(self._clock.current_time() * NS_PER_SECOND_F)

    def _bind(self) -> None:
        """Belong to the run we are in, unless bound to another one (``RuntimeError``)."""
        run = current_run_mark()
        if run is None:
            raise RuntimeError(
                f"{type(self).__name__} used outside trio.run: call it from a trio task"
            )
        if self._run is not run:
            if self._run is not UNBOUND:
                raise RuntimeError(
                    f"{type(self).__name__} belongs to another trio run: a broker or "
                    "regulator is used only in the trio.run it was created or first used in"
                )
            self._run = run
            self._clock = run.clock  # type: ignore[assignment]

    # -- the timer -------------------------------------------------------------

    def _schedule(self, wake: int | None) -> None:
        """Make sure the background task wakes no later than ``wake``."""
        if wake is not None and wake < self._timer:
            self._timer = wake
            if self._timer_scope is not None:
                self._timer_scope.deadline = to_trio_time(wake)

    def _called(self, now: int) -> None:
        """M3: a public call was handled; the first after a meter pass asks for a pass now."""
        if not self._nudge_armed:
            return
        self._nudge_armed = False
        self._update_guard()
        self._nudge_at = now
        self._schedule(now)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed(f"{type(self).__name__} is closed")

    def _deadline(self) -> int | None:
        raise NotImplementedError

    def _handle_timeouts(self, now: int) -> None:
        raise NotImplementedError

    def _sample(self, now: int, lag: int) -> Sample:
        raise NotImplementedError

    def _next_wake(self) -> int | None:
        wakes = [w for w in (self._deadline(), self._meter_wake, self._nudge_at) if w is not None]
        return min(wakes) if wakes else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The background task: timeouts and meters. Start it with ``nursery.start``.

        Returns when the host is closed; if it is cancelled, the host is
        closed (every queued request is answered ``Drop``). Raises
        ``RuntimeError`` if the host belongs to another trio run.
        """
        if self._running:
            raise RuntimeError(f"{type(self).__name__}.run() is already running")
        self._now()  # bind to this run, or refuse another run's host
        self._running = True
        try:
            with trio.CancelScope() as self._run_scope:
                if self._closed:
                    task_status.started()
                    return
                task_status.started()
                await self._loop()
        finally:
            self._running = False
            self._run_scope = None
            self._close_logging()

    def _close_logging(self) -> None:
        """Close on the background task's way out: a user exception is logged, not raised.

        Raising it here would turn the task's cancellation into a crash of its nursery.
        """
        try:
            self.close()
        except Exception:
            logger.exception("user code raised while %r was closing", self)

    async def _loop(self) -> None:
        while True:
            self._timer = math.inf  # recomputed from the policies' and meters' wake times
            self._schedule(self._next_wake())
            with trio.CancelScope(deadline=to_trio_time(self._timer)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = self._now()
            due = self._next_wake()
            if due is None or due > now:
                continue  # woken for a deadline that has since moved later
            lag = self._last_lag = now - due
            self._nudge_at = None
            self._handle_timeouts(now)
            if self._meters:
                self._run_meters(now, lag)

    # -- meters ------------------------------------------------------------------

    def _run_meters(self, now: int, lag: int) -> None:
        """M3: one sample, every meter's update in configuration order."""
        sample = self._sample(now, max(0, lag))
        wakes = [state.update(sample) for _meter, state in self._meters]
        self._meter_wake = _earliest(wakes, now)
        self._nudge_armed = True
        self._update_guard()

    def _init_meters(self, meters: Sequence[Meter], now: int) -> None:
        wakes = []
        for meter in meters:
            state, wake = meter.init(self, now)
            self._meters.append((meter, state))
            wakes.append(wake)
        self._meter_wake = _earliest(wakes, now)
        self._nudge_armed = bool(self._meters)  # a new host counts as just after a pass
        self._update_guard()

    def _prepare_meters(self, meters: Sequence[Meter], now: int) -> MeterChange:
        """M2, prepared: init new-only meters, recording what they do to the host.

        Kept meters' new parameters are tried on a trial state first, so that a
        configuration a meter cannot take fails here. Nothing is installed or
        closed yet; an exception leaves the running meters as they were.
        """
        kept = {type(meter) for meter, _state in self._meters}
        effects: list[Callable[[], None]] = []
        started: dict[type, tuple[MeterState, int | None]] = {}
        self._staged_effects = effects
        try:
            for meter in meters:
                if type(meter) in kept:
                    meter.init(_NullHost(), now)
                else:
                    started[type(meter)] = meter.init(self, now)
        finally:
            self._staged_effects = None
        return MeterChange(self, meters, started, effects, now)

    def _queue_sides(self) -> tuple[QueueSide, ...]:
        raise NotImplementedError

    def close(self) -> None:
        """Close the host: answer every queued request ``Drop``; idempotent.

        Afterwards ``len()`` is 0 and every other call raises
        :class:`~sbroker.BrokerClosed`. The background task returns.
        If a custom policy's ``terminate`` or a meter's ``close`` raises, the
        host still answers every request (draining the policy with
        ``handle_out``), closes every other meter and stops the background
        task; then the first such exception is re-raised (later ones are
        logged on the ``"sbroker"`` logger).
        """
        if self._closed:
            return
        self._closed = True
        self._update_guard()
        errors: list[Exception] = []
        now = self._initial_time()
        for side in self._queue_sides():
            attempt(side.answer_all, now, errors)
        for _meter, state in self._meters:
            attempt(state.close, None, errors)
        self._meters = []
        self._meter_wake = None
        self._protector = None
        self._update_guard()
        if self._run_scope is not None:
            self._run_scope.cancel()
        raise_first(errors)


def _earliest(wakes: Iterable[int | None], now: int) -> int | None:
    """The earliest of ``wakes`` (``None`` = never), clamped to ``>= now`` (M1)."""
    times = [w for w in wakes if w is not None]
    return max(min(times), now) if times else None
