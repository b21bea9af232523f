"""What the single-queue policies (Drop, Timeout, CoDel, Adaptive) share.

Their requests live in one deque in insertion order (queues.md Q3). This module
holds the common parameters (Q9), admission at ``max_len`` (Q10, Q11), trimming
on (re)configuration (Q12), cancel by tag, removal of an abandoned request, and
the read-only views. A concrete state adds its time-based check (Q8) and its
``handle_out``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import attrs

from sbroker import _validators
from sbroker.queues._protocol import DropCallback, Request


def out_field(*options: str) -> Any:
    """The ``out`` parameter: which end ``handle_out`` serves (default ``"fifo"``)."""
    return attrs.field(default="fifo", validator=_validators.choice(*options))


def drop_field() -> Any:
    """The ``drop`` parameter: which end is dropped at ``max_len`` (default ``"tail"``)."""
    return attrs.field(default="tail", validator=_validators.choice("head", "tail"))


def min_len_field() -> Any:
    """The ``min_len`` parameter: time-based drops never go below it (default 0)."""
    return attrs.field(default=0, validator=_validators.count())


def max_len_field() -> Any:
    """The ``max_len`` parameter: ``None`` or the most requests held (default ``None``)."""
    return attrs.field(default=None, validator=_validators.count(allow_none=True))


def check_lengths(policy: Any) -> None:
    """Q9: ``max_len`` must be ``None`` or ``>= min_len``."""
    _validators.check_bounds("min_len", getattr(policy, "min_len", 0), "max_len", policy.max_len)


class DequeState:
    """Mutable state shared by the single-queue policies.

    Subclasses implement ``_check(now) -> W`` (the time-based check, Q8) and
    ``handle_out``, and extend ``_adopt`` to take their own parameters.
    """

    __slots__ = ("_drop_head", "_lifo", "_max_len", "_min_len", "_on_drop", "_queue")

    def __init__(self, policy: Any, requests: Sequence[Request], on_drop: DropCallback) -> None:
        self._queue: deque[Request] = deque(requests)
        self._on_drop = on_drop
        self._adopt(policy)

    def _adopt(self, policy: Any) -> None:
        """Take the parameters of ``policy``."""
        self._lifo = policy.out == "lifo"
        # Q10: with max_len == 0 every arrival is dropped, whatever `drop` says.
        self._drop_head = policy.drop == "head" and policy.max_len != 0
        self._min_len: int = getattr(policy, "min_len", 0)
        self._max_len: int | None = policy.max_len

    def _check(self, now: int) -> int | None:
        raise NotImplementedError

    def start(self, now: int) -> int | None:
        """Finish ``init`` at ``now``: trim (Q12), then check (Q8); return ``W``.

        Subclasses with time-dependent state set it here first.
        """
        return self._trim_and_check(now)

    def _trim_and_check(self, now: int) -> int | None:
        self._trim(now)
        return self._check(now)

    def _admit(self, request: Request, now: int) -> None:
        """Q11: append ``request``, dropping it or the head at ``max_len``."""
        queue = self._queue
        if self._max_len is not None and len(queue) >= self._max_len:
            if not self._drop_head:
                self._on_drop(request, now)
                return
            self._on_drop(queue.popleft(), now)
        queue.append(request)

    def _trim(self, now: int) -> None:
        """Q12: drop the oldest (head drop) or newest (tail drop) beyond ``max_len``."""
        if self._max_len is None:
            return
        queue = self._queue
        pop = queue.popleft if self._drop_head or self._max_len == 0 else queue.pop
        for _ in range(len(queue) - self._max_len):
            self._on_drop(pop(), now)

    def handle_in(self, request: Request, now: int) -> int | None:
        """Q11 admission, then the check."""
        if self._max_len is None:
            self._queue.append(request)
        else:
            self._admit(request, now)
        return self._check(now)

    def handle_timeout(self, now: int) -> int | None:
        """Run the check."""
        return self._check(now)

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:
        """Remove every request tagged ``tag`` (unanswered), then check."""
        queue = self._queue
        kept = [request for request in queue if request.tag != tag]
        removed = len(queue) - len(kept)
        if removed:
            queue.clear()
            queue.extend(kept)
        return removed, self._check(now)

    def remove(self, request: Request, now: int) -> int | None:
        """Remove an abandoned ``request`` if it is still queued, then check."""
        try:
            self._queue.remove(request)
        except ValueError:
            pass
        return self._check(now)

    def config_change(self, policy: Any, now: int) -> int | None:
        """Adopt ``policy``'s parameters, trim (Q12), then check."""
        self._adopt(policy)
        return self._trim_and_check(now)

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        raise NotImplementedError

    def fq_out(self, now: int) -> tuple[Request | None, int | None]:
        """``handle_out`` inside a FairQueue: ``(None, remove_time)`` when empty."""
        item = self.handle_out(now)
        if item is None:
            return None, self._remove_time(now)
        return item

    def _remove_time(self, now: int) -> int:
        """When an empty sub-queue may be forgotten: at once, unless a subclass keeps memory."""
        return now

    def __len__(self) -> int:
        return len(self._queue)

    def send_time(self) -> int | None:
        """Send time of the oldest request, or ``None``."""
        queue = self._queue
        return queue[0].send_time if queue else None

    def terminate(self) -> list[Request]:
        """Hand over every request, oldest first."""
        requests = list(self._queue)
        self._queue.clear()
        return requests

    def snapshot(self) -> list[Request]:
        """The queued requests, oldest first, as ``terminate`` would return them; no changes."""
        return list(self._queue)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} len={len(self._queue)}>"


class DequePolicy:
    """Mixin for policy configurations whose state is a :class:`DequeState`."""

    _state_class: ClassVar[type[DequeState]]

    def __attrs_post_init__(self) -> None:
        check_lengths(self)  # Q9, after attrs ran the per-field validators

    def init(
        self, requests: Sequence[Request], now: int, on_drop: DropCallback
    ) -> tuple[DequeState, int | None]:
        """Create the state of one queue holding ``requests``; return it with ``W``."""
        state = self._state_class(self, requests, on_drop)
        return state, state.start(now)
