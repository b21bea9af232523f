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
from sbroker._units import optional_ns
from sbroker.queues._base import (
    DequePolicy,
    DequeState,
    check_lengths,
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

    def _expire(self, now: int) -> None:
        """T3: drop expired heads while more than ``min_len`` wait."""
        timeout = self._timeout
        if timeout is None:
            return
        queue = self._queue
        min_len = self._min_len
        deadline = now - timeout
        while len(queue) > min_len and queue[0].send_time <= deadline:
            self._on_drop(queue.popleft(), now)

    def _wake(self) -> int | None:
        """T7: the head's expiry while more than ``min_len`` wait."""
        queue = self._queue
        if self._timeout is None or len(queue) <= self._min_len:
            return None
        return queue[0].send_time + self._timeout

    def _check(self, now: int) -> int | None:
        self._expire(now)
        return self._wake()

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        self._expire(now)  # T5
        queue = self._queue
        if not queue:
            return None
        request = queue.pop() if self._lifo else queue.popleft()
        return request, self._wake()


@attrs.frozen
class TimeoutQueue(DequePolicy):
    """A queue that drops requests once they have waited ``timeout`` seconds.

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
    out: str = out_field("fifo", "lifo")
    drop: str = drop_field()
    min_len: int = min_len_field()
    max_len: int | None = max_len_field()

    _state_class = _TimeoutState

    def __attrs_post_init__(self) -> None:
        check_lengths(self)
