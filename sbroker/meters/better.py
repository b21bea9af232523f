"""BetterMeter: publish sojourn estimates for best-of-two balancing (regulation.md B1-B4).

The meter turns each :class:`~sbroker.meters.Sample` into two estimates, how
long a new request of each side would wait at this host:

    ask   = min(upper_ask,   queue_delay + process_delay + max(relative_time, 0))
    ask_r = min(upper_ask_r, queue_delay + process_delay + max(-relative_time, 0))

A fresh meter publishes both ``upper`` values (pessimistic, B2) until its
first sample. The host reads the latest values with ``host.estimate(side)``;
:func:`sbroker.balance.better_choice` and the balancer compare them. The meter
asks for a sample at least every ``update`` seconds, so an idle host's
estimates stay current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import attrs

from sbroker import _validators
from sbroker._units import to_ns
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["BetterMeter", "BetterMeterState", "BetterSide"]

_DEFAULT_UPPER = 5.0


class BetterSide(TypedDict, total=False):
    """The parameters of one side of a :class:`BetterMeter`: ``upper`` (seconds, ``>= 0``)."""

    upper: float


def _convert_side(name: str, value: object) -> BetterSide:
    """B1: a side's dict with its default filled in; errors name the parameter."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict with the key 'upper', got {value!r}")
    unknown = sorted(repr(key) for key in value if key != "upper")
    if unknown:
        raise ValueError(f"{name} has unknown keys {', '.join(unknown)}")
    upper = value.get("upper", _DEFAULT_UPPER)
    _validators.check_duration(f"{name}['upper']", upper)
    return BetterSide(upper=upper)


def _ask_side(value: Mapping[str, float]) -> BetterSide:
    return _convert_side("ask", value)


def _ask_r_side(value: Mapping[str, float]) -> BetterSide:
    return _convert_side("ask_r", value)


@attrs.frozen
class BetterMeter:
    """Publish each side's sojourn estimate on the host, for best-of-two balancing.

    Args:
        ask: ``dict(upper=...)``: the cap (seconds, ``>= 0``, default ``5.0``)
            of the published ask estimate. Beyond a queue's timeout all
            backed-up hosts are equally bad, so the cap loses nothing.
        ask_r: the same for the ask_r side.
        update: seconds (``> 0``) between samples while the host is idle.

    Read the estimates with ``broker.estimate("ask")`` (ns, or ``None``
    without a BetterMeter or once the meter is removed).
    """

    ask: BetterSide = attrs.field(
        default=BetterSide(upper=_DEFAULT_UPPER), converter=_ask_side, hash=False
    )
    ask_r: BetterSide = attrs.field(
        default=BetterSide(upper=_DEFAULT_UPPER), converter=_ask_r_side, hash=False
    )
    update: float = attrs.field(default=0.1, validator=_validators.duration(positive=True))

    def init(self, host: MeterHost, now: int) -> tuple[BetterMeterState, int]:
        """B2: publish both ``upper`` values; the first sample is wanted at ``now``."""
        return BetterMeterState(self), now


class BetterMeterState:
    """A :class:`BetterMeter` on one host: the published estimates (B2-B4)."""

    __slots__ = ("_ask", "_ask_r", "_update", "_upper_ask", "_upper_ask_r")

    def __init__(self, meter: BetterMeter) -> None:
        self._adopt(meter)
        self._ask: int | None = self._upper_ask
        self._ask_r: int | None = self._upper_ask_r

    def _adopt(self, meter: BetterMeter) -> None:
        self._upper_ask = to_ns(meter.ask["upper"])
        self._upper_ask_r = to_ns(meter.ask_r["upper"])
        self._update = to_ns(meter.update)

    def estimate(self, side: str) -> int | None:
        """The published estimate of ``side`` (``"ask"`` or ``"ask_r"``) in ns."""
        if side == "ask":
            return self._ask
        if side == "ask_r":
            return self._ask_r
        raise ValueError(f"side must be 'ask' or 'ask_r', got {side!r}")

    def update(self, sample: Sample) -> int:
        """B3: publish both sides' estimates; the next sample is due ``update`` from now."""
        delay = sample.queue_delay + sample.process_delay
        relative_time = sample.relative_time
        self._ask = min(self._upper_ask, delay + max(relative_time, 0))
        self._ask_r = min(self._upper_ask_r, delay + max(-relative_time, 0))
        return sample.time + self._update

    def config_change(self, meter: Any, now: int) -> int:
        """B4: adopt the parameters, keep the published values; a sample is wanted now."""
        self._adopt(meter)
        return now

    def close(self) -> None:
        """B4: unpublish: both estimates become ``None``."""
        self._ask = None
        self._ask_r = None

    def __repr__(self) -> str:
        return f"<BetterMeterState ask={self._ask} ask_r={self._ask_r}>"
