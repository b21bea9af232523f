"""CodelValve: CoDel turned inside out, to grow a pool of tasks (regulation.md V8, V9).

Theory of operation
-------------------

A CoDel queue drops work once sojourn times have stayed *above* a target for
an interval, then drops again at shrinking intervals while they stay above.
This valve is its mirror image: the updates it receives are relative times
from the work the tasks serve, and values *below* ``target`` mean work is
waiting for tasks. Once updates have stayed below target for a whole
``interval`` the valve opens for one ask; while they stay below, it opens
again for one ask at ``interval / sqrt(count)`` after the previous opening,
``count`` being the number of openings in this run, so the pool grows faster
the longer the shortage lasts. One update at or above target ends the run.

The valve lives in one of four phases:

=============== ============================================================
``IDLE``        the last update was at or above target (or none came yet)
``WAITING(t)``  updates below target since ``t - interval``: opens at ``t``
``AWAIT``       an opening was just taken; waits for an update below target
``OPENING``     updates stayed below target: opens at ``open_next``
=============== ============================================================

Transitions:

=============================== =================== ===========================
event                           from                to
=============================== =================== ===========================
update below target             ``IDLE``            ``WAITING(now + interval)``
update below target             ``AWAIT``           ``OPENING``
update at or above target       any                 ``IDLE``
ask/continue granted above min  ``OPENING``         ``AWAIT`` (``count += 1``)
ask/continue granted above min  ``WAITING``         ``AWAIT`` (restart)
=============================== =================== ===========================

Opening from ``OPENING`` steps ``open_next`` by ``trunc(interval /
sqrt(count))`` from the opening it consumed. Opening from ``WAITING`` starts a
new run (*restart*): if the previous run was recent (``count > 2`` and less
than ``8 * interval`` past its ``open_next``) it resumes two steps back,
otherwise from ``count = 1``. The state never asks for a wake: the status is
re-evaluated whenever the host calls with the time. Below ``min_size`` the
valve is always open and consumes nothing; at ``max_size`` always closed.
"""

from __future__ import annotations

import math

import attrs

from sbroker import _validators
from sbroker._units import to_ns
from sbroker.regulator._valve_base import (
    BaseValveState,
    ValveConfig,
    check_sizes,
    max_size_field,
    min_size_field,
)
from sbroker.regulator._valve_protocol import CLOSED, OPEN, Verdict

_IDLE = "idle"
_WAITING = "waiting"
_AWAIT = "await"
_OPENING = "opening"


class _CodelState(BaseValveState["CodelValve"]):
    __slots__ = ("_count", "_first", "_interval", "_open_next", "_phase", "_target")

    def _adopt(self, valve: CodelValve) -> None:
        super()._adopt(valve)
        self._target = to_ns(valve.target)
        self._interval = to_ns(valve.interval)

    def _start(self, now: int) -> None:
        self._phase = _IDLE
        self._first = now  # meaningful only while WAITING
        self._count = 0
        self._open_next = now

    # -- status ------------------------------------------------------------

    def _status_between(self, now: int) -> Verdict:
        phase = self._phase
        if phase == _OPENING:
            return OPEN if now >= self._open_next else CLOSED
        if phase == _WAITING:
            return OPEN if now >= self._first else CLOSED
        return CLOSED

    def _open_time_above(self) -> int | None:
        phase = self._phase
        if phase == _OPENING:
            return self._open_next
        if phase == _WAITING:
            return self._first
        return None

    # -- transitions -------------------------------------------------------

    def _step(self) -> int:
        """``trunc(interval / sqrt(count))`` in ns."""
        return int(self._interval / math.sqrt(self._count))

    def _take_opening(self, now: int) -> int | None:
        """Consume the current opening if there is one; return its time."""
        phase = self._phase
        if phase == _OPENING and now >= self._open_next:
            opened = self._open_next
            self._count += 1
            self._phase = _AWAIT
            self._open_next = opened + self._step()
            return opened
        if phase == _WAITING and now >= self._first:
            self._restart(now)
            return self._first
        return None

    def _restart(self, now: int) -> None:
        """A new run of openings begins at ``now``."""
        if self._count > 2 and now - self._open_next < 8 * self._interval:
            self._count -= 2
            self._open_next = now + self._step()
        else:
            self._count = 1
            self._open_next = now + self._interval
        self._phase = _AWAIT

    def _admit(self, k: int, now: int) -> int:
        opened = self._take_opening(now)
        # Only a host breaking V3 asks while closed: it still gets its lock.
        return now if opened is None else opened

    def _readmit(self, k: int, now: int) -> int | None:
        return self._take_opening(now)

    def update(self, value: int, now: int) -> Verdict:
        """Feed a relative time (ns): below ``target`` it moves towards an opening."""
        if value < self._target:
            if self._phase == _IDLE:
                self._phase = _WAITING
                self._first = now + self._interval
            elif self._phase == _AWAIT:
                self._phase = _OPENING
        else:
            self._phase = _IDLE  # count and open_next are kept for a restart
        return self._status(len(self._running), now)

    def _reconfigure(self, valve: CodelValve, now: int) -> None:
        self._adopt(valve)
        horizon = now + self._interval
        if self._phase == _WAITING:
            self._first = min(self._first, horizon)
        self._open_next = min(self._open_next, horizon)


@attrs.frozen
class CodelValve(ValveConfig):
    """A valve that opens while updates stay below ``target``, faster and faster.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        target: seconds; updates (relative times) below it count as "work is
            waiting for tasks".
        interval: seconds (``> 0``) updates must stay below target before the
            first opening; later openings come ``interval / sqrt(count)``
            apart.
        min_size: the valve is always open while fewer locks run.
        max_size: ``None`` or the most locks that run at once (``>= min_size``).
    """

    target: float = attrs.field(default=0.1, validator=_validators.signed_duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    min_size: int = min_size_field()
    max_size: int | None = max_size_field()

    _state_class = _CodelState

    def __attrs_post_init__(self) -> None:
        check_sizes(self)
