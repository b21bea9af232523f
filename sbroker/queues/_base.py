"""What the single-queue policies (Drop, Timeout, CoDel, Adaptive) share.

Their requests live in one deque in insertion order (queues.md Q3). This module
holds the common parameters (Q9), admission at ``max_len`` (Q10, Q11), trimming
on (re)configuration (Q12), cancel by tag, removal of an abandoned request, and
the read-only views. A concrete state adds its time-based check (Q8) and its
``handle_out``.

Removal in O(1): a request withdrawn from the middle of the deque (its caller
was cancelled) is not searched for. The state keeps the set of the requests it
holds (``_members``), so it knows in O(1) whether a request is queued;
withdrawing takes it out of that set and leaves a *dead* entry behind in the
deque, counted in ``_dead``. Dead entries are never left at
either end of the deque: whatever exposes one (a pop, a withdrawal at an end)
discards it at once, so ``queue[0]`` and ``queue[-1]`` are always live, an
empty deque means an empty queue, and the live length is
``len(queue) - _dead``. When dead entries outnumber live ones the deque is
rebuilt without them, which costs O(1) per withdrawal amortised. Enqueue and
dequeue stay O(1) and the order of live requests is exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

import attrs

from sbroker import _validators
from sbroker.queues._protocol import DropCallback, Request

_COMPACT_SLACK = 64  # dead entries tolerated before they may outnumber live ones


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


class LiveRequests:
    """A read-only view of a :class:`DequeState`'s queue: its live requests, oldest first."""

    __slots__ = ("_entries", "_members")

    def __init__(self, entries: deque[Request], members: set[Request]) -> None:
        self._entries = entries
        self._members = members

    def __iter__(self) -> Iterator[Request]:
        members = self._members
        return (request for request in self._entries if request in members)

    def __len__(self) -> int:
        return len(self._members)


class DequeState:
    """Mutable state shared by the single-queue policies.

    Subclasses implement ``_check(now) -> W`` (the time-based check, Q8) and
    ``handle_out``, and extend ``_adopt`` to take their own parameters. They
    take requests out with :meth:`_popleft`/:meth:`_pop` (or inline the same
    steps) and measure the queue with ``len(self._entries) - self._dead``.
    """

    __slots__ = (
        "_dead",
        "_drop_head",
        "_entries",
        "_lifo",
        "_max_len",
        "_members",
        "_min_len",
        "_on_drop",
        "_queue",
    )

    def __init__(self, policy: Any, requests: Sequence[Request], on_drop: DropCallback) -> None:
        self._entries: deque[Request] = deque(requests)  # live and dead, in insertion order
        self._members: set[Request] = set(requests)  # the live requests of _entries
        self._queue = LiveRequests(self._entries, self._members)  # the queue as it is seen
        self._dead = 0  # withdrawn requests still in _entries, never at an end
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

    # -- taking requests out -------------------------------------------------

    def _popleft(self) -> Request:
        """Take out the oldest request (the queue must not be empty)."""
        request = self._entries.popleft()
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        return request

    def _pop(self) -> Request:
        """Take out the newest request (the queue must not be empty)."""
        request = self._entries.pop()
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        return request

    def _discard_dead_ends(self) -> None:
        """Restore the invariant that both ends of the deque are live."""
        queue = self._entries
        members = self._members
        dead = self._dead
        while dead and queue[0] not in members:
            queue.popleft()
            dead -= 1
        while dead and queue[-1] not in members:
            queue.pop()
            dead -= 1
        self._dead = dead

    def _withdraw(self, request: Request) -> None:
        """Take out ``request``, which this state holds, wherever it is: O(1) amortised."""
        self._members.discard(request)
        self._dead += 1
        self._discard_dead_ends()
        dead = self._dead
        if dead > _COMPACT_SLACK and 2 * dead > len(self._entries):
            queue = self._entries
            members = self._members
            live = [r for r in queue if r in members]
            queue.clear()
            queue.extend(live)
            self._dead = 0

    def _admit(self, request: Request, now: int) -> None:
        """Q11: append ``request``, dropping it or the head at ``max_len``."""
        if self._max_len is not None and len(self._entries) - self._dead >= self._max_len:
            if not self._drop_head:
                self._on_drop(request, now)
                return
            self._on_drop(self._popleft(), now)
        self._members.add(request)
        self._entries.append(request)

    def _trim(self, now: int) -> None:
        """Q12: drop the oldest (head drop) or newest (tail drop) beyond ``max_len``."""
        if self._max_len is None:
            return
        pop = self._popleft if self._drop_head or self._max_len == 0 else self._pop
        for _ in range(len(self) - self._max_len):
            self._on_drop(pop(), now)

    # -- operations -------------------------------------------------------------

    def handle_in(self, request: Request, now: int) -> int | None:
        """Q11 admission, then the check."""
        if self._max_len is None:
            self._members.add(request)
            self._entries.append(request)
        else:
            self._admit(request, now)
        return self._check(now)

    def handle_timeout(self, now: int) -> int | None:
        """Run the check."""
        return self._check(now)

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:
        """Remove every request tagged ``tag`` (unanswered), then check: O(queue length).

        Hosts that know the requests under ``tag`` call :meth:`cancel_requests`.
        """
        members = self._members
        removed = 0
        kept: list[Request] = []
        for request in self._queue:
            if request.tag == tag:
                members.discard(request)
                removed += 1
            else:
                kept.append(request)
        if removed or self._dead:
            self._entries.clear()
            self._entries.extend(kept)
            self._dead = 0
        return removed, self._check(now)

    def cancel_requests(
        self, tag: Hashable, requests: Iterable[Request], now: int
    ) -> tuple[int, int | None]:
        """:meth:`handle_cancel` given the candidates: O(len(requests)), not O(queue length).

        ``requests`` must include every queued request tagged ``tag``; those
        this state does not hold, or with another tag, are ignored.
        """
        members = self._members
        removed = 0
        for request in requests:
            if request in members and request.tag == tag:
                self._withdraw(request)
                removed += 1
        return removed, self._check(now)

    def remove(self, request: Request, now: int) -> int | None:
        """Remove an abandoned ``request`` if it is still queued, then check: O(1) amortised."""
        if request in self._members:
            self._withdraw(request)
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
        return len(self._entries) - self._dead

    def send_time(self) -> int | None:
        """Send time of the oldest request, or ``None``: the head is always live."""
        queue = self._entries
        return queue[0].send_time if queue else None

    def terminate(self) -> list[Request]:
        """Hand over every request, oldest first."""
        requests = list(self._queue)
        self._members.clear()
        self._entries.clear()
        self._dead = 0
        return requests

    def snapshot(self) -> list[Request]:
        """The queued requests, oldest first, as ``terminate`` would return them; no changes."""
        return list(self._queue)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} len={len(self)}>"


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
