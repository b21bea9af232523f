"""Custom policies, meters and valves whose user code raises, for the robustness tests."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs

from sbroker.meters import MeterHost, Sample
from sbroker.queues import DropQueue, Request
from sbroker.queues._protocol import DropCallback


class Boom(Exception):
    """The user's own exception."""


def unchecked(config: Any, **changes: Any) -> Any:
    """``config`` with ``changes`` applied behind its validators' back.

    Stands for a configuration its constructor accepts but its state cannot
    take (the host must still change nothing when the state raises).
    """
    for name, value in changes.items():
        object.__setattr__(config, name, value)
    return config


def raising_key(bad: object) -> Any:
    """A FairQueue key function that raises :class:`Boom` for the value ``bad``."""

    def key(value: object) -> object:
        if value == bad:
            raise Boom(f"no key for {value!r}")
        return value

    return key


@attrs.frozen
class RaisingInitQueue:
    """A queue policy whose ``init`` always raises."""

    def init(self, requests: Sequence[Request], now: int, on_drop: DropCallback) -> Any:
        """Refuse to build a state."""
        raise Boom("init")


class _FlakyState(DropQueue._state_class):  # type: ignore[name-defined,misc]
    __slots__ = ()

    def config_change(self, policy: Any, now: int) -> int | None:
        if policy.fail_change:
            raise Boom("config_change")
        result: int | None = super().config_change(policy, now)
        return result

    def terminate(self) -> list[Request]:
        if self._max_len == 99:  # the marker of a state that refuses to hand over
            raise Boom("terminate")
        result: list[Request] = super().terminate()
        return result


@attrs.frozen
class FlakyQueue(DropQueue):
    """A fifo DropQueue whose ``config_change`` raises when the new one says so.

    With ``max_len=99`` its ``terminate`` raises.
    """

    fail_change: bool = False
    _state_class = _FlakyState


@attrs.frozen
class RaisingMeter:
    """A meter whose ``init`` always raises."""

    def init(self, host: MeterHost, now: int) -> Any:
        """Refuse to build a state."""
        raise Boom("meter init")


@attrs.frozen(eq=False)
class _RecordingMeterState:
    log: list[str]
    fail_close: bool

    def update(self, sample: Sample) -> int | None:
        return None

    def config_change(self, meter: Any, now: int) -> int | None:
        self.log.append("config_change")
        return None

    def close(self) -> None:
        self.log.append("close")
        if self.fail_close:
            raise Boom("meter close")


@attrs.frozen
class RecordingMeter:
    """A meter logging its state's ``config_change`` and ``close`` calls in ``log``."""

    log: list[str] = attrs.field(factory=list, eq=False)
    fail_close: bool = False

    def init(self, host: MeterHost, now: int) -> tuple[_RecordingMeterState, None]:
        """A state that records."""
        self.log.append("init")
        return _RecordingMeterState(self.log, self.fail_close), None


@attrs.frozen
class RaisingValve:
    """A valve whose ``init`` always raises."""

    def init(self, running: Mapping[Hashable, Any], now: int) -> Any:
        """Refuse to build a state."""
        raise Boom("valve init")


@attrs.frozen
class RaisingCloseMeter(RecordingMeter):
    """A recording meter whose state's ``close`` raises :class:`Boom`."""

    fail_close: bool = True


class _StampingState(DropQueue._state_class):  # type: ignore[name-defined,misc]
    __slots__ = ()

    def __init__(self, policy: Any, requests: Sequence[Request], on_drop: DropCallback) -> None:
        for request in requests:  # as a FairQueue writes its key on each request
            request.value = (policy.stamp, request.value)
        super().__init__(policy, requests, on_drop)


@attrs.frozen
class StampingQueue(DropQueue):
    """A fifo DropQueue whose ``init`` writes ``(stamp, value)`` on every request it takes."""

    stamp: str = ""
    _state_class = _StampingState
