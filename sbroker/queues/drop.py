"""DropQueue: a plain FIFO/LIFO queue with an optional length limit (queues.md §2).

It has no time-based behaviour (D2): requests leave only when served,
cancelled, or dropped by ``max_len`` (Q10-Q12). Every wake time is ``None``.
"""

from __future__ import annotations

import attrs

from sbroker._types import DropEnd, Out
from sbroker.queues._base import (
    DequePolicy,
    DequeState,
    drop_field,
    max_len_field,
    out_field,
)
from sbroker.queues._protocol import Request


class _DropState(DequeState):
    __slots__ = ()

    def _check(self, now: int) -> None:
        return None  # D2

    def handle_out(self, now: int) -> tuple[Request, None] | None:
        queue = self._entries
        if not queue:
            return None
        request = queue.pop() if self._lifo else queue.popleft()  # D3; _pop/_popleft inlined
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        return request, None


@attrs.frozen
class DropQueue(DequePolicy):
    """A queue that never times out; it drops only at ``max_len``.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        out: ``"fifo"`` serves the oldest request, ``"lifo"`` the newest.
        drop: at ``max_len``, ``"tail"`` drops the arriving request,
            ``"head"`` drops the oldest one to make room.
        max_len: ``None`` (unbounded) or the most requests held.
    """

    out: Out = out_field("fifo", "lifo")
    drop: DropEnd = drop_field()
    max_len: int | None = max_len_field()

    _state_class = _DropState
