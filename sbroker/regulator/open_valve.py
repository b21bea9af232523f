"""OpenValve: a plain concurrency limit (regulation.md V5).

The valve is open while fewer than ``max_size`` locks run, closed otherwise.
It never wakes and ignores updates. Its ``base`` is the last time the number
of locks fell below ``max_size`` (or the creation time): every ask reports
``base`` as its open time, so a task that starts the moment a lock frees up
has a relative time of zero, and with ``max_size=None`` every ask reports
``creation - now``.
"""

from __future__ import annotations

import attrs

from sbroker.regulator._valve_base import BaseValveState, ValveConfig, check_sizes, max_size_field
from sbroker.regulator._valve_protocol import OPEN, Verdict


class _OpenState(BaseValveState["OpenValve"]):
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

    _state_class = _OpenState

    def __attrs_post_init__(self) -> None:
        check_sizes(self)
