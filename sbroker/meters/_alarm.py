"""What the two alarm meters share: signalling (M8) and hysteresis (M9, M10).

An alarm meter classifies every sample as *slow* or *fast*. The alarm is set
once samples have stayed slow for ``interval`` and cleared once they have
stayed fast for ``interval``: a single sample of the other class restarts the
count. The state machine has two fields:

- ``active``: whether the alarm is set;
- ``toggle_at``: ``None`` while the samples agree with ``active``, else the
  time from which the first disagreeing sample flips it.

Alarm state belongs to the host (``host.set_alarm``); the meter only tells it
about transitions, logs them on the ``"sbroker"`` logger and calls the user's
``on_alarm`` callback, whose exceptions are logged and swallowed (M7).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs

from sbroker._units import to_ns
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["AlarmCallback", "AlarmState", "check_on_alarm", "signal_alarm"]

logger = logging.getLogger("sbroker")

#: ``on_alarm(host, active, description)``; its return value is ignored.
AlarmCallback = Callable[[Any, bool, str], object]


def check_on_alarm(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator of the ``on_alarm`` parameter: ``None`` or a callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name} must be None or callable, got {value!r}")


def signal_alarm(
    host: MeterHost, description: str, active: bool, on_alarm: AlarmCallback | None
) -> None:
    """M8: record an alarm transition on ``host``, log it, and call ``on_alarm``.

    The host learns first, so a callback reading ``host.alarms()`` sees the new
    state. Setting logs a WARNING, clearing an INFO. An exception raised by
    ``on_alarm`` is logged and swallowed (M7).
    """
    host.set_alarm(description, active)
    if active:
        logger.warning("alarm set: %s on %r", description, host)
    else:
        logger.info("alarm cleared: %s on %r", description, host)
    if on_alarm is None:
        return
    try:
        on_alarm(host, active, description)
    except Exception:
        logger.exception(
            "on_alarm callback %r failed for %s (active=%s)", on_alarm, description, active
        )


class AlarmState:
    """The M9 hysteresis state machine shared by the alarm meters.

    Subclasses set :attr:`description`, implement :meth:`_slow` and extend
    :meth:`_adopt` with their own parameters. The meter object passed to
    ``__init__`` and ``config_change`` must have ``interval`` (seconds) and
    ``on_alarm`` attributes.
    """

    __slots__ = ("_active", "_host", "_interval", "_on_alarm", "_toggle_at")

    description: str = ""

    def __init__(self, meter: Any, host: MeterHost) -> None:
        self._host = host
        self._active = False  # M8: init starts inactive, without a callback
        self._toggle_at: int | None = None
        self._adopt(meter)

    def _adopt(self, meter: Any) -> None:
        """Take the parameters of ``meter``."""
        self._interval: int = to_ns(meter.interval)
        self._on_alarm: AlarmCallback | None = meter.on_alarm

    def _slow(self, sample: Sample) -> bool:
        """Classify ``sample``: ``True`` for slow, ``False`` for fast."""
        raise NotImplementedError

    @property
    def active(self) -> bool:
        """Whether this meter's alarm is set."""
        return self._active

    @property
    def toggle_at(self) -> int | None:
        """When the current disagreeing run may flip the alarm, or ``None`` (M9)."""
        return self._toggle_at

    def update(self, sample: Sample) -> int | None:
        """M9: classify ``sample`` and flip the alarm once a run has lasted ``interval``.

        Returns ``toggle_at`` while a flip is pending, else ``None``.
        """
        now = sample.time
        if self._slow(sample) != self._active:
            # The sample disagrees with the alarm: a run towards a flip.
            toggle_at = self._toggle_at
            if toggle_at is None:
                toggle_at = self._toggle_at = now + self._interval
                return toggle_at
            if now < toggle_at:
                return toggle_at
            self._active = not self._active
            self._toggle_at = None
            signal_alarm(self._host, self.description, self._active, self._on_alarm)
            return None
        # The sample agrees with the alarm: any run towards a flip is broken.
        self._toggle_at = None
        return None

    def config_change(self, meter: Any, now: int) -> int | None:
        """M10: adopt ``meter``'s parameters, keep the alarm, shift a pending flip.

        A pending ``toggle_at`` moves by the change in ``interval``; the flip
        itself waits for the next sample.
        """
        old_interval = self._interval
        self._adopt(meter)
        toggle_at = self._toggle_at
        if toggle_at is None:
            return None
        toggle_at = self._toggle_at = toggle_at + self._interval - old_interval
        return max(now, toggle_at)

    def close(self) -> None:
        """Clear the alarm if it is set (M8)."""
        self._toggle_at = None
        if self._active:
            self._active = False
            signal_alarm(self._host, self.description, False, self._on_alarm)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} active={self._active} toggle_at={self._toggle_at}>"
