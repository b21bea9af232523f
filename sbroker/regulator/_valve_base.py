"""What the four valves share (regulation.md V2-V4).

Every valve state keeps its running locks in one insertion-ordered dict
``ref -> owner`` and a ``base`` time: the creation time, later the last time
the number of locks ``n`` fell below the valve's *floor* (``min_size``, or
``max_size`` for the OpenValve). Around that, the shape of every valve is the
same and lives here:

* ``status(k, now)``: open below ``min_size``, closed at ``max_size`` or
  above, otherwise the valve's own rule (``_status_between``);
* ``ask``: a lock that brings ``n`` up to ``min_size`` at most starts without
  consuming anything (``_open_time_below``); above it, the valve consumes
  whatever it rations (``_admit``);
* ``done``: remove the lock, move ``base`` when ``n`` leaves the floor, let
  the valve take the freed capacity back (``_released``);
* ``continue_`` (V4): unknown ref, below / at ``min_size``, above
  ``max_size``, and otherwise "done, then ask again if open" (``_readmit``);
* ``open_time``, ``size``, ``terminate``, ``timeout`` and ``config_change``.

A concrete valve subclasses :class:`BaseValveState` with those hooks and its
configuration mixes in :class:`ValveConfig`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from sbroker import _validators
from sbroker.regulator._valve_protocol import CLOSED, OPEN, ContinueKind, Verdict

ConfigT = TypeVar("ConfigT")


def min_size_field() -> Any:
    """The ``min_size`` parameter: below it the valve is always open (default 0)."""
    return attrs.field(default=0, validator=_validators.count())


def max_size_field() -> Any:
    """The ``max_size`` parameter: ``None`` (unbounded) or the most locks granted."""
    return attrs.field(default=None, validator=_validators.count(allow_none=True))


def check_sizes(valve: Any) -> None:
    """V2: ``max_size`` must be ``None`` or ``>= min_size`` (the error names ``max_size``)."""
    _validators.check_bounds("min_size", getattr(valve, "min_size", 0), "max_size", valve.max_size)


class BaseValveState(Generic[ConfigT]):
    """Mutable state shared by the valves: the running locks, sizes and ``base``.

    Subclasses implement the hooks ``_status_between``, ``_open_time_above``,
    ``_admit`` and ``_readmit``, extend ``_adopt`` and ``_start``, and may
    override ``_open_time_below``, ``_released``, ``_reconfigure`` and
    ``update``.
    """

    __slots__ = ("_base", "_floor", "_max", "_min", "_running", "_valve")

    #: Whether ``base`` tracks ``max_size`` (OpenValve) rather than ``min_size``.
    _floor_is_max: ClassVar[bool] = False

    def __init__(self, valve: ConfigT, running: Mapping[Hashable, Any], now: int) -> None:
        self._running: dict[Hashable, Any] = dict(running)
        self._base = now
        self._adopt(valve)
        self._start(now)

    # -- hooks -------------------------------------------------------------

    def _adopt(self, valve: ConfigT) -> None:
        """Take the parameters of ``valve``."""
        self._valve = valve
        config: Any = valve
        self._min: int = getattr(config, "min_size", 0)
        self._max: int | None = config.max_size
        self._floor: int | None = self._max if self._floor_is_max else self._min

    def _start(self, now: int) -> None:
        """Set the valve's own state at creation (after ``_adopt``)."""

    def _status_between(self, now: int) -> Verdict:
        """The status when ``min_size <= n < max_size``."""
        raise NotImplementedError

    def _open_time_below(self) -> int:
        """The open time while ``n < min_size`` (and of an ask reaching it)."""
        return self._base

    def _open_time_above(self) -> int | None:
        """``open_time()`` when ``min_size <= n < max_size``."""
        raise NotImplementedError

    def _admit(self, k: int, now: int) -> int:
        """An ask made ``n == k > min_size``: consume one opening, return its open time."""
        raise NotImplementedError

    def _readmit(self, k: int, now: int) -> int | None:
        """V4 for ``min_size < n == k <= max_size``: the open time of a granted continue.

        Equivalent to releasing the lock and, if the valve is then open,
        asking again (consuming what an ask consumes). ``None`` when the valve
        would stay closed: the caller then releases the lock.
        """
        raise NotImplementedError

    def _released(self, n: int, now: int) -> None:
        """A lock was removed; ``n`` is the count before the removal."""

    def _reconfigure(self, valve: ConfigT, now: int) -> None:
        """``config_change`` for a valve of the same class: adopt its parameters."""
        self._adopt(valve)

    # -- the protocol ------------------------------------------------------

    def _status(self, k: int, now: int) -> Verdict:
        if k < self._min:
            return OPEN
        if self._max is not None and k >= self._max:
            return CLOSED
        return self._status_between(now)

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        """Grant the lock ``ref`` to ``owner``; only while open (V3).

        If the host breaks that contract the lock is granted all the same.
        """
        running = self._running
        running[ref] = owner
        k = len(running)
        if k <= self._min:
            open_time = self._open_time_below()
        else:
            open_time = self._admit(k, now)
        return open_time, self._status(k, now)

    def _remove(self, ref: Hashable, now: int) -> Verdict:
        running = self._running
        n = len(running)
        if n == self._floor:
            self._base = now
        del running[ref]
        self._released(n, now)
        return self._status(n - 1, now)

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        """Release ``ref``: ``(True, verdict)``, or ``(False, verdict)`` if unknown."""
        if ref not in self._running:
            return False, self._status(len(self._running), now)
        return True, self._remove(ref, now)

    def continue_(self, ref: Hashable, now: int) -> tuple[ContinueKind, int | None, Verdict]:
        """V4: ``("go", open_time, verdict)``, ``("done", None, verdict)`` or not found."""
        k = len(self._running)
        if ref not in self._running:
            return "not_found", None, self._status(k, now)
        if k < self._min:
            return "go", self._base, self._status(k, now)
        if k == self._min:
            return "go", now, self._status(k, now)
        if self._max is None or k <= self._max:
            open_time = self._readmit(k, now)
            if open_time is not None:
                return "go", open_time, self._status(k, now)
        return "done", None, self._remove(ref, now)

    def update(self, value: int, now: int) -> Verdict:
        """Ignore ``value``; return the status."""
        return self._status(len(self._running), now)

    def timeout(self, now: int) -> Verdict:
        """Return the status at ``now``."""
        return self._status(len(self._running), now)

    def config_change(self, valve: Any, now: int) -> Verdict:
        """Adopt ``valve``'s parameters (same class), keeping locks and state."""
        if type(valve) is not type(self._valve):
            raise TypeError(
                f"config_change needs a {type(self._valve).__name__}, got {valve!r}; "
                "hand over with valve.init(state.terminate(), now) instead"
            )
        self._reconfigure(valve, now)
        return self._status(len(self._running), now)

    def size(self) -> int:
        """Number of running locks."""
        return len(self._running)

    def open_time(self) -> int | None:
        """When the valve opened (or will open) for the next ask, or ``None``."""
        n = len(self._running)
        if n < self._min:
            return self._open_time_below()
        if self._max is not None and n >= self._max:
            return None
        return self._open_time_above()

    def terminate(self) -> dict[Hashable, Any]:
        """Hand over the running locks ``{ref: owner}``; the state holds none after."""
        running = self._running
        self._running = {}
        return running

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._valve!r} size={len(self._running)}>"


class ValveConfig:
    """Mixin for valve configurations whose state is a :class:`BaseValveState`."""

    _state_class: ClassVar[type[BaseValveState[Any]]]

    def init(
        self, running: Mapping[Hashable, Any], now: int
    ) -> tuple[BaseValveState[Any], Verdict]:
        """Create the valve state holding ``running`` (``{ref: owner}``); return its verdict."""
        state = self._state_class(self, running, now)
        return state, state.timeout(now)
