"""The contract between a valve and the regulator driving it (regulation.md V1-V4).

A *valve* is an immutable configuration value (``CodelValve(target=0.05)``);
``valve.init(running, now)`` creates the mutable *state* of the valve of one
regulator. The state holds the running *locks* (permits), ``ref -> owner``,
and decides whether one more task may start: its answer to every operation
ends with a :class:`Verdict`, ``open`` (the regulator may grant the next ask
at once) or ``closed`` (asks must wait), plus the time at which the valve
wants :meth:`ValveState.timeout` to be called, if any.

Like queue policies and meters, valve states are sans-I/O: they never read a
clock, sleep or wake a task. Every operation receives the current time
``now`` (integer nanoseconds on the host's clock, never decreasing).

The host contract (V3): :meth:`ValveState.ask` is only called while the last
verdict was ``open``. In return the state guarantees, at the time ``t`` of
each verdict it gives:

* ``open`` implies ``open_time() <= t``; ``closed`` implies ``open_time()``
  is ``None`` or ``> t``;
* fewer locks than ``min_size`` implies ``open`` with no wake;
* ``max_size`` locks or more implies ``closed`` with no wake;
* every ``wake_at`` is ``None`` or ``>= t``.

A lock is never revoked: it ends only by :meth:`ValveState.done`, by a
:meth:`ValveState.continue_` answered ``"done"``, or when the host closes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

#: The two answers a valve gives: may the next ask start at once?
Status = Literal["open", "closed"]

#: How :meth:`ValveState.continue_` answers: keep running, stop, or unknown ref.
ContinueKind = Literal["go", "done", "not_found"]


class Verdict(NamedTuple):
    """A valve's decision after an operation: ``(status, wake_at)``.

    Attributes:
        status: ``"open"`` when the host may grant the next ask at once,
            ``"closed"`` when asks must wait.
        wake_at: ``None``, or the time (int ns, ``>=`` the operation's
            ``now``) at which the host must call :meth:`ValveState.timeout`
            unless another operation happens first. Each verdict replaces the
            previous one's ``wake_at``.

    A plain tuple, so ``status, wake_at = verdict`` works.
    """

    status: Status
    wake_at: int | None = None


#: The verdicts without a wake, shared to spare allocations.
OPEN = Verdict("open", None)
CLOSED = Verdict("closed", None)


@runtime_checkable
class ValveState(Protocol):
    """The mutable state of one regulator's valve, created by :meth:`Valve.init`.

    ``n`` below is the number of running locks (:meth:`size`). Refs are any
    hashable values, unique among the running locks; owners are opaque to the
    valve and only handed back by :meth:`terminate`.
    """

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        """Grant a lock ``ref`` held by ``owner``; only called while open (V3).

        Returns the lock's *open time* (when the valve opened for it; the
        host reports ``open_time - send_time`` as the ask's relative time) and
        the verdict for the next ask.
        """
        ...

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        """Release the lock ``ref``.

        Returns ``True`` if it was running (and is now released), ``False``
        if unknown (nothing changes), and the verdict.
        """
        ...

    def continue_(self, ref: Hashable, now: int) -> tuple[ContinueKind, int | None, Verdict]:
        """The holder of ``ref`` asks to keep running (V4).

        Returns ``("go", open_time, verdict)`` when the lock is kept,
        ``("done", None, verdict)`` when it has been released (the task must
        stop), ``("not_found", None, verdict)`` for an unknown ref (nothing
        changes or is consumed).
        """
        ...

    def update(self, value: int, now: int) -> Verdict:
        """Feed a measurement (int ns, e.g. a queue's relative time); valves may ignore it."""
        ...

    def timeout(self, now: int) -> Verdict:
        """Re-evaluate the status at ``now`` (due wakes, or any other time)."""
        ...

    def config_change(self, valve: Any, now: int) -> Verdict:
        """Adopt the parameters of ``valve`` (same class), keeping locks and state.

        Raises ``TypeError`` for a valve of another class: the host then
        hands over with ``valve.init(state.terminate(), now)`` instead (R17).
        """
        ...

    def size(self) -> int:
        """Number of running locks ``n``; no side effects."""
        ...

    def open_time(self) -> int | None:
        """When the valve opened, or will open, for the next ask; ``None``: not foreseen.

        May lie in the future. No side effects.
        """
        ...

    def terminate(self) -> dict[Hashable, Any]:
        """Hand over the running locks as ``{ref: owner}``; the state is dead after."""
        ...


@runtime_checkable
class Valve(Protocol):
    """An immutable valve configuration: the factory of :class:`ValveState`.

    Configurations are comparable, printable and reusable by several
    regulators. A host reconfigures its valve with
    ``state.config_change(new_valve, now)`` when ``type(new_valve)`` is the
    type of the running valve, otherwise with
    ``new_valve.init(state.terminate(), now)``.
    """

    def init(self, running: Mapping[Hashable, Any], now: int) -> tuple[ValveState, Verdict]:
        """Create a state holding the locks ``running`` (``{ref: owner}``, possibly empty).

        Returns it with its first verdict.
        """
        ...
