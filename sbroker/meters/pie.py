"""PieMeter: drop requests at random before they queue, PIE-style (regulation.md §3).

Theory of operation
===================

PIE (Proportional Integral controller Enhanced, RFC 8033) keeps a queue's
sojourn time near a target by refusing arrivals with a probability ``p``
that it adjusts from two measurements rather than from the queue length.
Here the "queue" is one side of a broker or regulator, and refusing means
answering a request ``Drop(0)`` before the host looks at it.

*Sojourn estimate (P4).* From each sample the meter estimates how long a
request of each side would wait: the host's scheduling lag plus, for the side
that is waiting, the relative time (asks wait while ``relative_time > 0``,
ask_rs while it is negative).

*Controller (P6).* Every ``update`` seconds (a *full step*) each side moves
``p`` by

    (s - target) / ALPHA + (s - last_s) / BETA

The first term is the integral part (sojourns above target push ``p`` up for
as long as they last); the second is the proportional part on the trend
(growing sojourns push harder, shrinking ones pull back). ``ALPHA`` and
``BETA`` are PIE's 0.125/s and 1.25/s written as divisors in nanoseconds.

*Probability scaling (P6).* A step of the raw size would throw a tiny ``p``
straight to large values, so while ``p`` is small the step is divided by a
factor that shrinks by powers of two as ``p`` grows (2048 below 1e-6 down to
2 below 0.1). ``p`` thus climbs gradually through the orders of magnitude,
then is clamped to ``[0, 1]``. When the side has been idle for two full steps
(both sojourns 0), ``p`` also decays by 2 % per step.

*Burst allowance (P6, P8).* A fresh burst should not be punished: while the
side is quiet (``p == 0`` and both sojourns under half the target) the
allowance is refilled to ``interval``; otherwise each full step spends the
time since the last one. While any allowance is left, and while the latest
sojourn is under half the target with ``p < 0.2``, the published probability
is 0 even though ``p`` keeps learning.

*Timing (P5, P7).* Samples between full steps are *light steps*: they only
re-evaluate the gate for the current sojourn. After every sample the meter
publishes both sides' gated probabilities to its :class:`PieProtector`.

*Protector (P9, P11).* The protector is what the host consults for every
gated request. It holds each side's probability quantised to ``2**27``
steps and a per-side counter, reset at each publish to the number of
requests waiting and incremented for every gated request since. A request
is always admitted while its counter is within ``min_len``, always dropped
beyond ``max_len``, and otherwise dropped with the published probability.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

import attrs

from sbroker import _validators
from sbroker._types import SideTargets
from sbroker._units import to_ns
from sbroker.meters._protocol import MeterHost, Sample

__all__ = ["PieMeter", "PieProtector", "PieSide"]

#: P2: PIE's alpha = 0.125/s and beta = 1.25/s as divisors of nanoseconds.
ALPHA = 8_000_000_000
BETA = 800_000_000

#: P9: probabilities are published as integers in ``[0, P_ONE]``.
P_ONE = 2**27

#: P6: ``(bound, divisor)``: while ``p < bound``, steps are divided by ``divisor``.
_SCALE = ((1e-6, 2048), (1e-5, 512), (1e-4, 128), (1e-3, 32), (1e-2, 8), (0.1, 2))


# --------------------------------------------------------------------------
# Configuration


@attrs.frozen(eq=False, repr=False)
class PieSide(Mapping[str, float]):
    """The PIE parameters of one side: a read-only mapping with keys
    ``"target"`` and ``"interval"`` (seconds).

    ``PieMeter`` builds it from the ``dict`` it is given; it compares equal to
    a dict with the same items and prints like one.
    """

    target: float = attrs.field(default=0.1, validator=_validators.duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))

    def __getitem__(self, key: str) -> float:
        if key == "target":
            return self.target
        if key == "interval":
            return self.interval
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("target", "interval"))

    def __len__(self) -> int:
        return 2

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.target, self.interval))

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def _convert_side(name: str, value: object) -> PieSide:
    """P1: a side's dict with defaults filled in; errors name the parameter."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict with keys 'target' and 'interval', got {value!r}")
    unknown = sorted(repr(key) for key in value if key not in ("target", "interval"))
    if unknown:
        raise ValueError(f"{name} has unknown keys {', '.join(unknown)}")
    target = value.get("target", 0.1)
    interval = value.get("interval", 1.0)
    _validators.check_duration(f"{name}['target']", target)
    _validators.check_duration(f"{name}['interval']", interval, positive=True)
    return PieSide(target=target, interval=interval)


def _ask_side(value: SideTargets | PieSide) -> PieSide:
    return _convert_side("ask", value)


def _ask_r_side(value: SideTargets | PieSide) -> PieSide:
    return _convert_side("ask_r", value)


@attrs.frozen
class PieMeter:
    """Drop gated requests at random to keep each side's sojourn near a target.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        ask: ``dict(target=..., interval=...)`` for the ask side, in seconds;
            missing keys take the defaults ``target=0.1`` (``>= 0``), the
            sojourn PIE aims for, and ``interval=1.0`` (``> 0``), the burst
            allowance during which nothing is dropped.
        ask_r: the same for the ask_r side.
        update: seconds (``> 0``) between recalculations of the probabilities.
        min_len: a request is never dropped while at most this many requests
            of its side are counted (waiting at the last publish plus gated
            since).
        max_len: ``None``, or beyond this count every request is dropped.
        rng: the random source of the drops (default: a fresh
            ``random.Random()``); not part of equality or ``repr``.

    ``init`` installs a :class:`PieProtector` on the host with
    ``host.set_protector``; ``close`` removes it. The host answers a dropped
    request ``Drop(sojourn_time=0)`` without queueing it (P12).
    """

    ask: PieSide = attrs.field(default=PieSide(), converter=_ask_side)
    ask_r: PieSide = attrs.field(default=PieSide(), converter=_ask_r_side)
    update: float = attrs.field(default=0.1, validator=_validators.duration(positive=True))
    min_len: int = attrs.field(default=0, validator=_validators.count())
    max_len: int | None = attrs.field(default=None, validator=_validators.count(allow_none=True))
    rng: random.Random = attrs.field(
        default=None, converter=_validators.rng_or_new, eq=False, repr=False, kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        _validators.check_bounds("min_len", self.min_len, "max_len", self.max_len)

    def init(self, host: MeterHost, now: int) -> tuple[_PieMeterState, int]:
        """Create the state for ``host``, install its protector; first update at ``now`` (P5)."""
        state = _PieMeterState(self, host, now)
        return state, now


# --------------------------------------------------------------------------
# The protector


class PieProtector:
    """The admission gate a :class:`PieMeter` installs on its host (P9, P11).

    The meter publishes into it after every sample; the host calls
    :meth:`admit` for every gated request.
    """

    __slots__ = ("_count", "_max_len", "_min_len", "_p", "_rng")

    def __init__(self, rng: random.Random, min_len: int, max_len: int | None) -> None:
        self._rng = rng
        self._min_len = min_len
        self._max_len = max_len
        self._p = {"ask": 0, "ask_r": 0}
        self._count = {"ask": 0, "ask_r": 0}

    def admit(self, side: str) -> bool:
        """P11: count one gated request of ``side``; ``False`` means drop it.

        A dropped request still counts until the next publish.
        """
        count = self._count
        if side not in count:
            raise ValueError(f"side must be 'ask' or 'ask_r', got {side!r}")
        c = count[side] = count[side] + 1
        max_len = self._max_len
        if max_len is not None and c > max_len:
            return False
        if c > self._min_len:
            p = self._p[side]
            if p == P_ONE:
                return False
            if p > 0 and self._rng.randrange(P_ONE) < p:
                return False
        return True

    def configure(self, rng: random.Random, min_len: int, max_len: int | None) -> None:
        """Adopt new parameters (P10); counters and probabilities are kept."""
        self._rng = rng
        self._min_len = min_len
        self._max_len = max_len

    def publish(self, ask: float, ask_r: float, ask_len: int, ask_r_len: int) -> None:
        """P9: store both probabilities quantised and reset the counters to the waiting counts."""
        self._p["ask"] = _quantise(ask)
        self._p["ask_r"] = _quantise(ask_r)
        self._count["ask"] = ask_len
        self._count["ask_r"] = ask_r_len

    def p_int(self, side: str) -> int:
        """The published drop probability of ``side`` in units of ``2**-27``."""
        return self._p[side]

    def counter(self, side: str) -> int:
        """Requests of ``side`` counted since the last publish (waiting then, gated since)."""
        return self._count[side]

    @property
    def min_len(self) -> int:
        """Counts up to this are always admitted."""
        return self._min_len

    @property
    def max_len(self) -> int | None:
        """Counts beyond this are always dropped (``None``: no limit)."""
        return self._max_len

    def __repr__(self) -> str:
        return f"<PieProtector p={self._p} counters={self._count}>"


def _quantise(p: float) -> int:
    return min(P_ONE, max(0, int(p * P_ONE)))


# --------------------------------------------------------------------------
# The controller of one side


class _PieController:
    """P3: the PIE state of one side; times in ns."""

    __slots__ = ("allowance", "interval", "last", "p", "published", "target", "updated_at")

    def __init__(self, side: PieSide, now: int) -> None:
        self.target = to_ns(side.target)
        self.interval = to_ns(side.interval)
        self.p = 0.0
        self.last: int | None = None  # L: the sojourn of the last full step
        self.updated_at = now
        self.allowance = self.interval  # A
        self.published = 0.0

    def full_step(self, s: int, now: int) -> None:
        """P6: recalculate ``p`` from sojourn ``s``, spend allowance, publish."""
        last = self.last
        if last is None:
            last = s
            self.updated_at = now
        p = self.p
        delta = (s - self.target) / ALPHA + (s - last) / BETA
        for bound, divisor in _SCALE:
            if p < bound:
                delta /= divisor
                break
        p = min(1.0, max(0.0, p + delta))
        if s == 0 and last == 0:
            p *= 0.98  # idle decay
        self.p = p
        self.allowance = max(0, self.allowance - (now - self.updated_at))
        self.last = s
        self.updated_at = now
        self.published = self.gate(s)

    def light_step(self, s: int) -> None:
        """P7: re-evaluate the gate only."""
        self.published = self.gate(s)

    def gate(self, s: int) -> float:
        """P8: the probability to publish for sojourn ``s``; may refill the allowance."""
        last = self.last
        if last is None:
            return 0.0  # no full step yet
        half = self.target // 2
        if self.p == 0.0 and s < half and last < half:
            self.allowance = self.interval
            return 0.0
        if self.allowance > 0:
            return 0.0
        if last < half and self.p < 0.2:
            return 0.0
        return self.p

    def adopt(self, side: PieSide) -> None:
        """P10: take new parameters, rescale the allowance, re-gate the last sojourn."""
        old_interval = self.interval
        self.target = to_ns(side.target)
        self.interval = to_ns(side.interval)
        if self.last is None:
            self.allowance = self.interval
            self.published = 0.0
            return
        if self.allowance != 0:
            self.allowance = max(0, self.allowance - old_interval + self.interval)
        self.published = self.gate(self.last)


# --------------------------------------------------------------------------
# The meter state


class _PieMeterState:
    """A :class:`PieMeter` watching one host (P3, P5, P10, P13)."""

    __slots__ = ("_host", "_lens", "_next_full", "_protector", "_sides", "_update")

    def __init__(self, meter: PieMeter, host: MeterHost, now: int) -> None:
        self._host = host
        self._sides = {
            "ask": _PieController(meter.ask, now),
            "ask_r": _PieController(meter.ask_r, now),
        }
        self._update = to_ns(meter.update)
        self._next_full = now
        self._lens = (0, 0)  # waiting counts of the last sample
        self._protector = PieProtector(meter.rng, meter.min_len, meter.max_len)
        host.set_protector(self._protector)

    @property
    def protector(self) -> PieProtector:
        """The protector installed on the host."""
        return self._protector

    def probability(self, side: str) -> float:
        """The controller's drop probability ``p`` of ``side`` (before gating)."""
        return self._sides[side].p

    def published(self, side: str) -> float:
        """The probability of ``side`` last published to the protector (after gating)."""
        return self._sides[side].published

    def last_sojourn(self, side: str) -> int | None:
        """The sojourn ``L`` of ``side`` at the last full step (ns), ``None`` before the first."""
        return self._sides[side].last

    def allowance(self, side: str) -> int:
        """The burst allowance ``A`` of ``side`` left (ns)."""
        return self._sides[side].allowance

    def update(self, sample: Sample) -> int:
        """P5: a full step if due, else a light step, on both sides; then publish (P9).

        Returns the time of the next full step.
        """
        now = sample.time
        queue_delay = sample.queue_delay
        relative_time = sample.relative_time
        ask = self._sides["ask"]
        ask_r = self._sides["ask_r"]
        s_ask = queue_delay + max(0, relative_time)  # P4
        s_ask_r = queue_delay + max(0, -relative_time)
        if now < self._next_full:
            ask.light_step(s_ask)
            ask_r.light_step(s_ask_r)
        else:
            ask.full_step(s_ask, now)
            ask_r.full_step(s_ask_r, now)
            self._next_full = now + self._update
        self._lens = (sample.ask_len, sample.ask_r_len)
        self._protector.publish(ask.published, ask_r.published, *self._lens)
        return self._next_full

    def config_change(self, meter: PieMeter, now: int) -> int:
        """P10: adopt ``meter``'s parameters, keeping ``p`` and the allowance; republish.

        The protector's counters are reset to the waiting counts of the last
        sample (the meter sees no newer ones). Returns the next full step.
        """
        self._sides["ask"].adopt(meter.ask)
        self._sides["ask_r"].adopt(meter.ask_r)
        self._update = update = to_ns(meter.update)
        self._next_full = min(now + update, max(now, self._next_full))
        protector = self._protector
        protector.configure(meter.rng, meter.min_len, meter.max_len)
        protector.publish(self._sides["ask"].published, self._sides["ask_r"].published, *self._lens)
        return self._next_full

    def close(self) -> None:
        """P13: remove the protector; the host admits everything again."""
        self._host.set_protector(None)

    def __repr__(self) -> str:
        ask = self._sides["ask"]
        ask_r = self._sides["ask_r"]
        return (
            f"<PieMeterState p=({ask.p}, {ask_r.p}) "
            f"published=({ask.published}, {ask_r.published}) next_full={self._next_full}>"
        )
