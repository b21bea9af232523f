"""Decoding the server's answers: results (protocol.md section 2) and statistics."""

from __future__ import annotations

from typing import Any

from sbroker._results import Drop, Go, NotFound, Stop
from sbroker._statistics import BrokerStatistics, SideStatistics


def decode_result(raw: Any, go_value: Any = None) -> Go | Drop | Stop | NotFound:
    """``["go", ref, value, relative, sojourn]``, ``["drop", sojourn]``, ... as result objects.

    ``go_value``, when given, replaces a ``Go``'s value (a regulator's name on
    the wire becomes the remote regulator, as in-process).
    """
    try:
        kind = raw[0]
        if kind == "go":
            _, ref, value, relative_time, sojourn_time = raw
            return Go(ref, value if go_value is None else go_value, relative_time, sojourn_time)
        if kind == "drop":
            return Drop(raw[1])
        if kind == "stop":
            return Stop(raw[1])
        if kind == "not_found":
            return NotFound(raw[1])
    except (TypeError, ValueError, IndexError):
        pass
    raise ValueError(f"malformed result from the server: {raw!r:.200}")


def decode_match(raw: Any, go_value: Any = None) -> Go | Drop:
    """A broker's or regulator's ask result: ``Go`` or ``Drop``."""
    result = decode_result(raw, go_value)
    if not isinstance(result, Go | Drop):
        raise ValueError(f"expected go or drop from the server, got {raw!r:.200}")
    return result


def _side(raw: Any) -> SideStatistics:
    return SideStatistics(
        waiting=raw["waiting"],
        go=raw["go"],
        drop=raw["drop"],
        sojourn_p50=raw.get("sojourn_p50"),
        sojourn_p90=raw.get("sojourn_p90"),
        sojourn_p99=raw.get("sojourn_p99"),
    )


def decode_broker_statistics(raw: Any) -> BrokerStatistics:
    """A broker's ``statistics`` map as the in-process :class:`~sbroker.BrokerStatistics`."""
    try:
        return BrokerStatistics(
            ask=_side(raw["ask"]),
            ask_r=_side(raw["ask_r"]),
            scheduling_lag=raw.get("scheduling_lag", 0),
            alarms=frozenset(raw.get("alarms", ())),
        )
    except (TypeError, KeyError, AttributeError):
        raise ValueError(f"malformed statistics from the server: {raw!r:.200}") from None
