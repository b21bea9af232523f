"""RateValve: at most ``limit`` task starts per sliding ``interval`` (regulation.md V10-V13).

Theory of operation
-------------------

Tasks within ``min_size`` run freely. Above it the valve hands out *slots*:
``limit`` tokens, each stamped with the time from which it may be used. A task
that starts above ``min_size`` takes the earliest slot (which must not lie in
the future); when a task finishes above ``min_size`` its slot comes back
stamped ``interval`` after the finish. Hence at most ``limit`` tasks run above
``min_size`` at once, and at most ``limit`` start above it in any
``interval``: a slot used at ``t`` can next be used at ``finish + interval``.

The slots wait in an ascending deque, so the head (``next_slot``) is the
only one that decides the status: none left means closed without a wake; a
head in the future means closed with a wake at that time (the only case in
which the valve asks to be woken); a head already due means open.

When more tasks run above ``min_size`` than ``limit`` (after a smaller limit
or a hand-over of many locks) the surplus is counted in ``overflow``, and the
next finishes pay it off before any slot comes back. Invariant (V11)::

    len(slots) - overflow + max(0, n - min_size) == limit

Creating the state, or reconfiguring it, rebuilds the slots: kept slots
follow a change of ``interval``, missing ones are stamped one ``interval``
ahead. So a new valve stays closed above ``min_size`` for one ``interval``.
Updates are ignored. A granted ``continue_`` takes a slot and returns one as
if the task had finished and started again, and reports ``base`` as its open
time (as the Erlang original does).
"""

from __future__ import annotations

from collections import deque

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

#: The largest ``limit``: the state holds one slot per permit.
MAX_LIMIT = 2**20


class _RateState(BaseValveState["RateValve"]):
    __slots__ = ("_interval", "_limit", "_overflow", "_slots")

    def _adopt(self, valve: RateValve) -> None:
        super()._adopt(valve)
        self._limit = valve.limit
        self._interval = to_ns(valve.interval)

    def _start(self, now: int) -> None:
        self._slots: deque[int] = deque()
        self._overflow = 0
        self._rebuild(0, now + self._interval)  # V12

    def _rebuild(self, shift: int, fresh: int) -> None:
        """Refill the slots for the current ``limit`` and lock count (V12)."""
        k = self._limit - max(0, len(self._running) - self._min)
        if k > 0:
            slots = self._slots
            keep = [slots[i] + shift for i in range(min(k, len(slots)))]
            keep.extend([fresh] * (k - len(keep)))
            self._slots = deque(keep)
            self._overflow = 0
        else:
            self._slots = deque()
            self._overflow = -k

    # -- status ------------------------------------------------------------

    def _status_between(self, now: int) -> Verdict:
        slots = self._slots
        if not slots:
            return CLOSED
        next_slot = slots[0]
        if now < next_slot:
            return Verdict("closed", next_slot)
        return OPEN

    def _open_time_below(self) -> int:
        slots = self._slots
        return min(self._base, slots[0]) if slots else self._base

    def _open_time_above(self) -> int | None:
        slots = self._slots
        return slots[0] if slots else None

    # -- transitions -------------------------------------------------------

    def _admit(self, k: int, now: int) -> int:
        slots = self._slots
        if slots:
            return slots.popleft()
        # Only a host breaking V3 asks without a slot: the lock is owed.
        self._overflow += 1
        return now

    def _readmit(self, k: int, now: int) -> int | None:
        slots = self._slots
        if not slots or now < slots[0]:
            return None
        slots.popleft()
        slots.append(now + self._interval)
        return self._base

    def _released(self, n: int, now: int) -> None:
        if n > self._min:
            if self._overflow:
                self._overflow -= 1
            else:
                self._slots.append(now + self._interval)

    def _reconfigure(self, valve: RateValve, now: int) -> None:
        old_interval = self._interval
        self._adopt(valve)
        self._rebuild(self._interval - old_interval, now + self._interval)


@attrs.frozen
class RateValve(ValveConfig):
    """A valve that lets at most ``limit`` tasks start per ``interval`` above ``min_size``.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31`` (``limit``: ``2**20``); ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        limit: the most tasks running above ``min_size``, and the most
            starting above it in any ``interval`` (an int in
            ``0 .. 2**20``: the valve keeps one slot per permit).
        interval: seconds (``> 0``, at most ``10**9``) of the sliding window;
            a new valve stays closed above ``min_size`` for one interval.
        min_size: the valve is always open while fewer locks run.
        max_size: ``None`` or the most locks that run at once (``>= min_size``).
    """

    limit: int = attrs.field(default=100, validator=_validators.count(maximum=MAX_LIMIT))
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    min_size: int = min_size_field()
    max_size: int | None = max_size_field()

    _state_class = _RateState

    def __attrs_post_init__(self) -> None:
        check_sizes(self)
