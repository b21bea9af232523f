"""OverloadMeter: an alarm for a host whose event loop cannot keep up (regulation.md M11).

Each sample's ``queue_delay`` (the host's scheduling lag, M4) is compared with
``target``: below it the sample is fast, otherwise slow. The alarm
``"message_queue_slow"`` is set after ``interval`` of unbroken slow samples
and cleared after ``interval`` of unbroken fast ones (M9).
"""

from __future__ import annotations

from typing import Any

import attrs

from sbroker import _validators
from sbroker._units import to_ns
from sbroker.meters._alarm import AlarmCallback, AlarmState, check_on_alarm
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["OverloadMeter"]


class _OverloadState(AlarmState):
    __slots__ = ("_target",)

    description = "message_queue_slow"

    def _adopt(self, meter: Any) -> None:
        super()._adopt(meter)
        self._target: int = to_ns(meter.target)

    def _slow(self, sample: Sample) -> bool:
        # M11. The target == 0 case (M12) counts a sample without lag as slow
        # while any request waits, like Erlang's non-empty mailbox.
        queue_delay = sample.queue_delay
        target = self._target
        if queue_delay < target:
            return False
        return not (target == 0 and queue_delay == 0 and sample.ask_len + sample.ask_r_len == 0)


@attrs.frozen
class OverloadMeter:
    """Raise the alarm ``"message_queue_slow"`` while the host's scheduling lag is high.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        target: seconds of scheduling lag (``>= 0``) from which a sample is slow.
            With ``0``, a sample is also slow while any request waits (M12);
            prefer a positive target.
        interval: seconds (``> 0``) samples must stay slow to set the alarm,
            and fast to clear it.
        on_alarm: ``None`` or ``on_alarm(host, active, description)``, called
            after each transition; its exceptions are logged and ignored.

    The alarm state lives in the host (``host.alarms()``); the meter object is
    an immutable, shareable configuration value.
    """

    target: float = attrs.field(default=0.1, validator=_validators.duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    on_alarm: AlarmCallback | None = attrs.field(default=None, validator=check_on_alarm)

    def init(self, host: MeterHost, now: int) -> tuple[_OverloadState, int | None]:
        """Create the meter's state for ``host``: alarm clear, nothing pending."""
        return _OverloadState(self, host), None
