"""UpdateMeter: feed a host's relative time to regulators (regulation.md §4).

Each target is a regulator and a side. Roughly every ``update`` seconds the
meter calls ``regulator.update(value)`` with the host's latest
``relative_time`` (side ``"ask"``) or its negation (side ``"ask_r"``), so a
worker broker can drive a pool regulator: ``-relative_time`` is positive
while workers (ask_rs) wait for work (M19).

The period is drawn afresh after every send, uniformly between 0.5x and 1.5x
``update`` (M15), so hosts created together do not update in lock step.

A regulator here is any object with a synchronous ``update(value: int)``
method. :class:`sbroker.BrokerClosed` means the regulator has closed: it is
swallowed and the target stays scheduled, as Erlang ignored dead regulators.
Any other exception propagates to the host (M7).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import attrs

from sbroker import _validators
from sbroker._errors import BrokerClosed
from sbroker._units import to_ns
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["UpdateMeter"]

_DEFAULT_UPDATE = 0.1

#: ``(regulator, side, update_seconds)``, as stored by :class:`UpdateMeter`.
Target = tuple[Any, str, float]


def _convert_targets(value: Iterable[tuple[Any, ...]]) -> tuple[Target, ...]:
    """M14: normalise to a tuple of ``(regulator, side, update)``; errors name ``targets``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"targets must be a list of (regulator, side, update), got {value!r}")
    targets: list[Target] = []
    seen: set[tuple[int, str]] = set()
    for entry in value:
        if not isinstance(entry, tuple) or len(entry) not in (2, 3):
            raise TypeError(
                f"targets entries must be (regulator, side) or (regulator, side, update), "
                f"got {entry!r}"
            )
        regulator, side = entry[0], entry[1]
        update = entry[2] if len(entry) == 3 else _DEFAULT_UPDATE
        if not callable(getattr(regulator, "update", None)):
            raise TypeError(f"targets: {regulator!r} has no update(value) method")
        if side not in ("ask", "ask_r"):
            raise ValueError(f"targets: side must be 'ask' or 'ask_r', got {side!r}")
        _validators.check_duration("targets: update", update, positive=True)
        key = (id(regulator), side)
        if key in seen:
            raise ValueError(f"targets: ({regulator!r}, {side!r}) appears more than once")
        seen.add(key)
        targets.append((regulator, side, update))
    if not targets:
        raise ValueError("targets must not be empty")
    return tuple(targets)


@attrs.frozen
class UpdateMeter:
    """Send the host's relative time to regulators, about every ``update`` seconds.

    Args:
        targets: a non-empty list of ``(regulator, side, update)`` or
            ``(regulator, side)`` (``update`` defaults to ``0.1``).
            ``side`` is ``"ask"`` (send ``relative_time``) or ``"ask_r"``
            (send ``-relative_time``); ``update`` is seconds ``> 0``. Each
            ``(regulator, side)`` pair, regulators compared by identity, may
            appear once.
        rng: the source of the period jitter (default: a fresh
            ``random.Random()``); not part of equality or ``repr``.

    Stored as a tuple of ``(regulator, side, update)`` triples.
    """

    targets: tuple[Target, ...] = attrs.field(converter=_convert_targets)
    rng: random.Random = attrs.field(
        default=None, converter=_validators.rng_or_new, eq=False, repr=False, kw_only=True
    )

    def init(self, host: MeterHost, now: int) -> tuple[_UpdateMeterState, int]:
        """Create the state; every target is due at ``now`` (M16)."""
        return _UpdateMeterState(self, now), now


class _Entry:
    """M16: one target's schedule."""

    __slots__ = ("due", "last_sent", "negate", "period", "regulator")

    def __init__(self, target: Target, due: int, last_sent: int | None) -> None:
        regulator, side, update = target
        self.regulator = regulator
        self.negate = side == "ask_r"
        self.period = to_ns(update)
        self.due = due
        self.last_sent = last_sent


class _UpdateMeterState:
    """An :class:`UpdateMeter` on one host (M15-M18)."""

    __slots__ = ("_entries", "_keys", "_rng")

    def __init__(self, meter: UpdateMeter, now: int) -> None:
        self._rng = meter.rng
        self._entries = [_Entry(target, now, None) for target in meter.targets]
        self._keys = [(target[0], target[1]) for target in meter.targets]

    def _period(self, update: int) -> int:
        """M15: uniform on ``[update // 2 + 1, update // 2 + update]``."""
        return update // 2 + self._rng.randint(1, update)

    def _next(self) -> int:
        return min(entry.due for entry in self._entries)

    def due(self) -> list[int]:
        """Each target's due time (ns), in list order."""
        return [entry.due for entry in self._entries]

    def update(self, sample: Sample) -> int:
        """M17: send to every due target, earliest due first; return the next due time."""
        now = sample.time
        entries = self._entries
        if now < self._next():
            return self._next()
        relative_time = sample.relative_time
        # sorted() is stable: ties keep list order.
        for entry in sorted((e for e in entries if e.due <= now), key=lambda e: e.due):
            try:
                entry.regulator.update(-relative_time if entry.negate else relative_time)
            except BrokerClosed:
                pass
            entry.last_sent = now
            entry.due = now + self._period(entry.period)
        return self._next()

    def config_change(self, meter: UpdateMeter, now: int) -> int:
        """M18: adopt ``meter``'s targets, keeping the schedule of targets already sent to."""
        old = {
            (id(regulator), side): entry
            for (regulator, side), entry in zip(self._keys, self._entries, strict=True)
        }
        self._rng = meter.rng
        entries = []
        for target in meter.targets:
            previous = old.get((id(target[0]), target[1]))
            entry = _Entry(target, now, None)
            if previous is not None and previous.last_sent is not None:
                entry.last_sent = previous.last_sent
                entry.due = max(previous.last_sent + self._period(entry.period), now)
            entries.append(entry)
        self._entries = entries
        self._keys = [(target[0], target[1]) for target in meter.targets]
        return self._next()

    def close(self) -> None:
        """Nothing to undo: the meter only sends."""

    def __repr__(self) -> str:
        return f"<UpdateMeterState due={self.due()}>"
