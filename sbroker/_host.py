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
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from sbroker._errors import BrokerClosed
from sbroker._time import now_ns, to_trio_time
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


def initial_time() -> int:
    """The host's clock at creation; 0 when created outside ``trio.run``."""
    try:
        return now_ns()
    except RuntimeError:
        return 0


class Host:
    """Base of :class:`~sbroker.Broker` and :class:`~sbroker.regulator.Regulator`.

    Subclasses implement ``_deadline()`` (their policies' earliest wake time),
    ``_handle_timeouts(now)``, ``_sample(now, lag)`` and ``_answer_all(now)``.
    """

    def __init__(self, now: int) -> None:
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
        if active:
            self._alarms = self._alarms | {description}
        else:
            self._alarms = self._alarms - {description}

    def set_protector(self, protector: Protector | None) -> None:
        """Install or remove the admission gate of a PIE meter (P11, P13)."""
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

    def _answer_all(self, now: int) -> None:
        raise NotImplementedError

    def _next_wake(self) -> int | None:
        wakes = [w for w in (self._deadline(), self._meter_wake, self._nudge_at) if w is not None]
        return min(wakes) if wakes else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The background task: timeouts and meters. Start it with ``nursery.start``.

        Returns when the host is closed; if it is cancelled, the host is
        closed (every queued request is answered ``Drop``).
        """
        if self._running:
            raise RuntimeError(f"{type(self).__name__}.run() is already running")
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
            self.close()

    async def _loop(self) -> None:
        while True:
            self._timer = math.inf  # recomputed from the policies' and meters' wake times
            self._schedule(self._next_wake())
            with trio.CancelScope(deadline=to_trio_time(self._timer)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            now = now_ns()
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

    def _change_meters(self, meters: Sequence[Meter], now: int) -> None:
        """M2: close old-only meters, init new-only ones, config_change kept ones."""
        old = {type(meter): state for meter, state in self._meters}
        kept = {type(meter) for meter in meters} & old.keys()
        for meter_type, state in old.items():
            if meter_type not in kept:
                state.close()
        started = {type(m): m.init(self, now) for m in meters if type(m) not in kept}
        wakes = [wake for _state, wake in started.values()]
        wakes += [old[type(m)].config_change(m, now) for m in meters if type(m) in kept]
        self._meters = [
            (m, old[type(m)] if type(m) in kept else started[type(m)][0]) for m in meters
        ]
        self._meter_wake = _earliest(wakes, now)
        if self._meters and self._nudge_at is None:
            self._nudge_armed = True
        self._update_guard()
        self._schedule(self._meter_wake)

    def _close_meters(self) -> None:
        for _meter, state in self._meters:
            state.close()
        self._meters = []
        self._meter_wake = None
        self._protector = None
        self._update_guard()

    def close(self) -> None:
        """Close the host: answer every queued request ``Drop``; idempotent.

        Afterwards ``len()`` is 0 and every other call raises
        :class:`~sbroker.BrokerClosed`. The background task returns.
        """
        if self._closed:
            return
        self._closed = True
        self._update_guard()
        self._answer_all(initial_time())
        self._close_meters()
        if self._run_scope is not None:
            self._run_scope.cancel()


def _earliest(wakes: Iterable[int | None], now: int) -> int | None:
    """The earliest of ``wakes`` (``None`` = never), clamped to ``>= now`` (M1)."""
    times = [w for w in wakes if w is not None]
    return max(min(times), now) if times else None
