"""OpenValve: a plain concurrency limit (regulation.md V5).

The valve is open while fewer than ``max_size`` locks run, closed otherwise.
It never wakes and ignores updates. Its ``base`` is the last time the number
of locks fell below ``max_size`` (or the creation time): every ask reports
``base`` as its open time, so a task that starts the moment a lock frees up
has a relative time of zero, and with ``max_size=None`` every ask reports
``creation - now``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs

from sbroker.regulator._valve_base import BaseValveState, ValveConfig, check_sizes, max_size_field
from sbroker.regulator._valve_protocol import CLOSED, OPEN, Verdict


class OpenValveState(BaseValveState["OpenValve"]):
    """The state of an :class:`OpenValve`.

    The regulator runs the ``ask`` and ``done`` below inlined on its hot path
    (``sbroker/regulator/_regulator.py``): a change here is made there too.
    """

    __slots__ = ()

    _floor_is_max = True

    def _status_between(self, now: int) -> Verdict:
        return OPEN

    def _open_time_above(self) -> int | None:
        return self._base

    def _admit(self, k: int, now: int) -> int:
        return self._base

    def _readmit(self, k: int, now: int) -> int | None:
        # V5: below max -> GO(base); at max -> GO(now) (releasing would move base).
        return now if k == self._max else self._base

    # ask and done, the regulator's hot path, in one step each: the base
    # class's answers with its hooks resolved for this valve (no min_size).

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        """Grant ``ref``; the open time is ``base``; closed once ``max_size`` run."""
        running = self._running
        running[ref] = owner
        max_size = self._max
        return self._base, CLOSED if max_size is not None and len(running) >= max_size else OPEN

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        """Release ``ref``; ``base`` moves to ``now`` when the count leaves ``max_size``."""
        running = self._running
        n = len(running)
        if ref not in running:
            return False, self._status(n, now)
        if n == self._floor:
            self._base = now
        del running[ref]
        max_size = self._max
        return True, CLOSED if max_size is not None and n - 1 >= max_size else OPEN


@attrs.frozen
class OpenValve(ValveConfig):
    """A valve open whenever fewer than ``max_size`` locks run.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        max_size: ``None`` (no limit: always open) or the most locks that
            run at once. ``0`` keeps the valve closed.
    """

    max_size: int | None = max_size_field()

    _state_class = OpenValveState

    def __attrs_post_init__(self) -> None:
        check_sizes(self)
