"""UnderloadMeter: an alarm for a regulator whose valve stands open unused (M13).

A regulator's ``relative_time`` is negative while its valve is open and no
ask takes it (M6): ``-relative_time`` is how long the valve has been open
unused. A sample is slow when that is at least ``target``, else fast. The
alarm ``"valve_slow"`` is set after ``interval`` of unbroken slow samples and
cleared after ``interval`` of unbroken fast ones (M9).
"""

from __future__ import annotations

from typing import Any

import attrs

from sbroker import _validators
from sbroker._units import to_ns
from sbroker.meters._alarm import AlarmCallback, AlarmState, check_on_alarm
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["UnderloadMeter"]


class _UnderloadState(AlarmState):
    __slots__ = ("_target",)

    description = "valve_slow"

    def _adopt(self, meter: Any) -> None:
        super()._adopt(meter)
        self._target: int = to_ns(meter.target)

    def _slow(self, sample: Sample) -> bool:
        return -sample.relative_time >= self._target  # M13


@attrs.frozen
class UnderloadMeter:
    """Raise the alarm ``"valve_slow"`` while a regulator's valve stays open unused.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        target: seconds the valve must have stood open without an ask for a
            sample to be slow. May be negative: then a sample is also slow
            while asks wait less than ``-target``.
        interval: seconds (``> 0``) samples must stay slow to set the alarm,
            and fast to clear it.
        on_alarm: ``None`` or ``on_alarm(host, active, description)``, called
            after each transition; its exceptions are logged and ignored.

    Meant for a :class:`~sbroker.regulator.Regulator`; on a broker it reads
    the broker's ``relative_time`` (M5) the same way, so it fires while
    ask_rs wait.
    """

    target: float = attrs.field(default=0.1, validator=_validators.signed_duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    on_alarm: AlarmCallback | None = attrs.field(default=None, validator=check_on_alarm)

    def init(self, host: MeterHost, now: int) -> tuple[_UnderloadState, int | None]:
        """Create the meter's state for ``host``: alarm clear, nothing pending."""
        return _UnderloadState(self, host), None
