"""TimeoutQueue: drops requests that have waited ``timeout`` (queues.md §3).

A request is expired once ``now - send_time >= timeout`` (T2). The check (T3)
drops expired requests from the head while more than ``min_len`` wait, and
stops at the first fresh head; since send times increase along the queue,
the head is always the next to expire, so the wake time is the head's expiry
(T7).
"""

from __future__ import annotations

import attrs

from sbroker import _validators
from sbroker._types import DropEnd, Out
from sbroker._units import optional_ns
from sbroker.queues._base import (
    DequePolicy,
    DequeState,
    drop_field,
    max_len_field,
    min_len_field,
    out_field,
)
from sbroker.queues._protocol import Request


class _TimeoutState(DequeState):
    __slots__ = ("_timeout",)

    def _adopt(self, policy: TimeoutQueue) -> None:
        super()._adopt(policy)
        self._timeout = optional_ns(policy.timeout)

    def _check(self, now: int) -> int | None:
        """T3, then T7: drop expired heads above ``min_len``; wake at the head's expiry."""
        timeout = self._timeout
        queue = self._entries
        min_len = self._min_len
        if timeout is None or len(queue) - self._dead <= min_len:
            return None
        deadline = now - timeout
        while queue[0].send_time <= deadline:
            self._on_drop(self._popleft(), now)
            if len(queue) - self._dead <= min_len:
                return None
        return queue[0].send_time + timeout

    def handle_in(self, request: Request, now: int) -> int | None:
        # Q11 then T3/T7, answering the common case (a fresh head) without the check loop.
        queue = self._entries
        if self._max_len is None:
            self._members.add(request)
            queue.append(request)
        else:
            self._admit(request, now)
        timeout = self._timeout
        if timeout is None or len(queue) - self._dead <= self._min_len:
            return None
        expiry = queue[0].send_time + timeout
        return expiry if expiry > now else self._check(now)

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        queue = self._entries
        if not queue:
            return None
        timeout = self._timeout
        if timeout is not None and queue[0].send_time + timeout <= now:
            self._check(now)  # T5: expire first, then serve
            if not queue:
                return None
        request = queue.pop() if self._lifo else queue.popleft()  # _pop/_popleft inlined
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        if timeout is None or len(queue) - self._dead <= self._min_len:
            return request, None
        return request, queue[0].send_time + timeout


@attrs.frozen
class TimeoutQueue(DequePolicy):
    """A queue that drops requests once they have waited ``timeout`` seconds.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    Args:
        timeout: seconds a request may wait (``None``: forever). Reaching the
            timeout exactly counts as expired; ``0`` expires on arrival.
        out: ``"fifo"`` serves the oldest request, ``"lifo"`` the newest.
        drop: at ``max_len``, ``"tail"`` drops the arriving request,
            ``"head"`` drops the oldest one to make room.
        min_len: timeouts never drop below this many waiting requests.
        max_len: ``None`` (unbounded) or the most requests held.
    """

    timeout: float | None = attrs.field(
        default=5.0, validator=_validators.duration(allow_none=True)
    )
    out: Out = out_field("fifo", "lifo")
    drop: DropEnd = drop_field()
    min_len: int = min_len_field()
    max_len: int | None = max_len_field()

    _state_class = _TimeoutState
