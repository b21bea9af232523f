"""attrs validators shared by every configuration class (policies, meters, valves).

Each validator names the parameter it rejects, raises ``TypeError`` for a value
of the wrong type and ``ValueError`` for a value out of range (api.md rule 5).
``bool`` is never accepted where a number is expected (queues.md Q9).

Every number is bounded, so no configuration can overflow a conversion or
crash a host later: durations lie within :data:`MAX_SECONDS` (``10**9`` s,
about 31 years) of zero and counts are at most :data:`MAX_COUNT` (``2**31``).
``nan`` and infinities are rejected everywhere. Ints are compared exactly
before any float conversion, so ``10**400`` is a ``ValueError``, not an
``OverflowError``.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from sbroker._units import to_ns

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

#: The largest duration, in seconds, any configuration accepts (about 31 years).
MAX_SECONDS = 10**9
#: The largest count (lengths, sizes, limits) any configuration accepts.
MAX_COUNT = 2**31


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """``repr(value)``, abbreviated for ints too long to read."""
    if isinstance(value, int) and not -(10**30) < value < 10**30:
        return f"an int of {len(str(abs(value)))} digits"
    return repr(value)


def _check_seconds(name: str, value: object, *, signed: bool) -> float:
    """A finite number of seconds, at most ``MAX_SECONDS`` (in magnitude if ``signed``)."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    assert isinstance(value, (int, float))
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not signed and value < 0:
        raise ValueError(f"{name} must be >= 0, got {_shown(value)}")
    if not -MAX_SECONDS <= value <= MAX_SECONDS:  # exact for ints; also catches inf
        bound = "in magnitude " if signed else ""
        raise ValueError(
            f"{name} must be at most {MAX_SECONDS:,} seconds {bound}(10**9), got {_shown(value)}"
        )
    return value


def check_duration(
    name: str, value: object, *, allow_none: bool = False, positive: bool = False
) -> None:
    """Check that ``value`` is a duration in seconds (``>= 0``, or ``> 0``).

    At most ``MAX_SECONDS``. With ``positive`` the duration must be at least
    one nanosecond after conversion. Raises ``TypeError``/``ValueError``
    naming ``name``.
    """
    if value is None:
        if allow_none:
            return
        raise TypeError(f"{name} must be a number of seconds, not None")
    seconds = _check_seconds(name, value, signed=False)
    if positive and to_ns(seconds) < 1:
        raise ValueError(f"{name} must be at least 1 ns, got {value!r}")


def duration(*, allow_none: bool = False, positive: bool = False) -> Validator:
    """attrs validator form of :func:`check_duration`."""

    def validate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_duration(attribute.name, value, allow_none=allow_none, positive=positive)

    return validate


def signed_duration() -> Validator:
    """A duration in seconds that may be negative (e.g. a RelativeValve target).

    Its magnitude is at most ``MAX_SECONDS``.
    """

    def validate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        _check_seconds(attribute.name, value, signed=True)

    return validate


def check_count(
    name: str, value: object, *, allow_none: bool = False, maximum: int = MAX_COUNT
) -> None:
    """Check that ``value`` is an int in ``0 .. maximum`` (not a ``bool``), or allowed ``None``."""
    if value is None:
        if allow_none:
            return
        raise TypeError(f"{name} must be an int, not None")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {_shown(value)}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}, got {_shown(value)}")


def count(*, allow_none: bool = False, maximum: int = MAX_COUNT) -> Validator:
    """attrs validator form of :func:`check_count`."""

    def validate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_count(attribute.name, value, allow_none=allow_none, maximum=maximum)

    return validate


def choice(*options: str) -> Validator:
    """The value must be one of ``options``."""

    def validate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{attribute.name} must be one of {options!r}, got {value!r}")
        if value not in options:
            raise ValueError(f"{attribute.name} must be one of {options!r}, got {value!r}")

    return validate


def check_bounds(low_name: str, low: int, high_name: str, high: int | None) -> None:
    """Check ``low <= high`` (``high=None`` is infinity); the error names ``high_name``."""
    if high is not None and high < low:
        raise ValueError(f"{high_name} must be None or >= {low_name} ({low}), got {high}")


def check_factory(name: str, value: object, protocol: type, arguments: int, what: str) -> None:
    """Check that ``value`` is an instance implementing ``protocol``.

    Its ``init`` must accept ``arguments`` positional arguments, which tells a
    queue policy (``init(requests, now, on_drop)``) from a valve or meter
    (``init(x, now)``). Raises ``TypeError`` naming ``name``.
    """
    if isinstance(value, type) or not isinstance(value, protocol):
        raise TypeError(f"{name} must be {what} (with an init method), got {value!r}")
    try:
        inspect.signature(value.init).bind(*([None] * arguments))  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(f"{name} must be {what}: {value!r} has the wrong init") from None
    except ValueError:  # no signature to inspect (a builtin): trust the protocol check
        pass


def rng_or_new(value: random.Random | None) -> random.Random:
    """attrs converter for ``rng=``: the given ``random.Random``, or a fresh one."""
    if value is None:
        return random.Random()
    if not isinstance(value, random.Random):
        raise TypeError(f"rng must be None or a random.Random, got {value!r}")
    return value
