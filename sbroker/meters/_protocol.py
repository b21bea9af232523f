"""The contract between a meter and the host (broker or regulator) it watches.

A *meter* is an immutable configuration value (``OverloadMeter(target=0.05)``);
``meter.init(host, now)`` creates its mutable state for one host. The host's
background task feeds every meter state a :class:`Sample` (regulation.md M3,
M4) and sleeps until the earliest time any meter asked to be called again.

Meter states are sans-I/O: they never read a clock or sleep. They act on the
host only through the small :class:`MeterHost` interface (alarms, protector)
or, for an update meter, by calling a regulator's synchronous ``update``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class Sample:
    """What a host tells its meters at each meter pass (regulation.md M4).

    Attributes:
        time: the host's clock at the pass (int ns).
        queue_delay: the background task's scheduling lag for the deadline it
            slept until, ``>= 0`` (ns): event-loop congestion.
        process_delay: always 0 for the built-in hosts (kept for custom meters).
        relative_time: ns; ``> 0`` asks have waited that long for a
            counterparty, ``< 0`` ask_rs have (M5, M6).
        ask_len: requests waiting in the ask queue.
        ask_r_len: requests waiting in the ask_r queue (0 for a regulator).
    """

    time: int
    queue_delay: int
    process_delay: int
    relative_time: int
    ask_len: int
    ask_r_len: int


@runtime_checkable
class Protector(Protocol):
    """The admission gate a PIE meter installs on its host (regulation.md P11).

    The host asks it before handling a gated call (P12); it never sees the
    request itself.
    """

    def admit(self, side: str) -> bool:
        """Count one gated request of ``side`` (``"ask"``/``"ask_r"``); False means drop it."""
        ...


@runtime_checkable
class MeterHost(Protocol):
    """What a meter may do to the broker or regulator it watches."""

    def set_alarm(self, description: str, active: bool) -> None:
        """Record that the alarm ``description`` is now set (``True``) or cleared."""
        ...

    def set_protector(self, protector: Protector | None) -> None:
        """Install (or with ``None`` remove) the admission gate for gated calls."""
        ...


@runtime_checkable
class MeterState(Protocol):
    """The mutable state of one meter on one host."""

    def update(self, sample: Sample) -> int | None:
        """Take a sample; return the earliest time (ns) the meter wants another, or ``None``.

        May be called before the time it asked for (M1); the meter decides
        itself whether anything is due.
        """
        ...

    def config_change(self, meter: Any, now: int) -> int | None:
        """Adopt the parameters of ``meter`` (same class), keeping state; return the next time."""
        ...

    def close(self) -> None:
        """The meter leaves the host: clear its alarms, remove its protector."""
        ...


@runtime_checkable
class Meter(Protocol):
    """An immutable meter configuration: the factory of :class:`MeterState`.

    A host accepts at most one meter of each class (M2).
    """

    def init(self, host: MeterHost, now: int) -> tuple[MeterState, int | None]:
        """Create this meter's state for ``host``; return it with the first update time."""
        ...
