"""RelativeValve: one more task per update below target (regulation.md V6, V7).

The regulator's owner feeds :meth:`update` with a relative time, typically a
broker's ``Go.relative_time`` seen by the tasks: below ``target`` it means the
work is waiting for workers, so one more task may start. Each such update
admits at most one ask (or continue) above ``min_size``: granting one consumes
the update, and the valve stays closed until the next update below target.
Below ``min_size`` the valve is always open; at ``max_size`` always closed.
It never wakes.
"""

from __future__ import annotations

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


class _RelativeState(BaseValveState["RelativeValve"]):
    __slots__ = ("_last", "_target", "_updated")

    def _adopt(self, valve: RelativeValve) -> None:
        super()._adopt(valve)
        self._target = to_ns(valve.target)

    def _start(self, now: int) -> None:
        self._last: int | None = None  # V6: None at start and after consumption
        self._updated = now

    def _fast(self) -> bool:
        last = self._last
        return last is not None and last < self._target

    def _status_between(self, now: int) -> Verdict:
        return OPEN if self._fast() else CLOSED

    def _open_time_above(self) -> int | None:
        return self._updated if self._fast() else None

    def _admit(self, k: int, now: int) -> int:
        self._last = None  # one ask per fast update
        return self._updated

    def _readmit(self, k: int, now: int) -> int | None:
        if not self._fast():
            return None
        self._last = None
        return self._updated

    def update(self, value: int, now: int) -> Verdict:
        """Record ``value`` (ns); below ``target`` it lets one more task start."""
        self._last = value
        self._updated = now
        return self._status(len(self._running), now)


@attrs.frozen
class RelativeValve(ValveConfig):
    """A valve that admits one more task for each update below ``target``.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        target: seconds; an update (a relative time, converted to seconds)
            below it opens the valve for one ask. May be negative.
        min_size: the valve is always open while fewer locks run.
        max_size: ``None`` or the most locks that run at once (``>= min_size``).
    """

    target: float = attrs.field(default=0.1, validator=_validators.signed_duration())
    min_size: int = min_size_field()
    max_size: int | None = max_size_field()

    _state_class = _RelativeState

    def __attrs_post_init__(self) -> None:
        check_sizes(self)
