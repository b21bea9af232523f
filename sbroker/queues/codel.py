"""CodelQueue: CoDel active queue management for request queues (queues.md §4).

Theory of operation
-------------------

CoDel does not look at how long the queue is but at how long requests have
waited in it. A request is *fast* while its sojourn is below ``target`` and
*slow* from then on. One slow request means nothing: a burst that is being
served will produce a few. A queue whose requests stay slow for a whole
``interval`` has a standing backlog, though, and waiting longer in it will not
help anyone, so CoDel starts dropping heads. It drops one request, waits one
``interval``, drops another if the queue is still slow, and keeps shortening
the gap (``interval / sqrt(count)``) until a request is served fast again.

Erlang's sbroker adapts this to a queue of callers rather than packets: drops
may happen not only when a request is dequeued (the classic CoDel point) but
also when one is enqueued, cancelled or when the host's timer fires, so an
idle consumer side cannot let the backlog rot unnoticed. Only the dequeue path
ever declares the queue healthy again.

Two more things are worth knowing before reading the code:

* ``check_at`` gates all work: before that time the check does nothing. It
  is the next moment at which anything can change (the head turning slow,
  the first drop, the next scheduled drop), and it is the wake time handed
  to the host. Its gating is observable in corner cases, so it is kept
  exactly as the spec defines it.
* A request that is still fast is never dropped by CoDel (rule C15), even when
  the drop schedule has fallen far behind; only ``max_len`` can drop it.

State
-----

``mode``
    ``OK`` (not judging), ``SLOW`` (a slow request was seen; the first drop
    is due at ``first_drop``) or ``DROPPING`` (the next drop is due at
    ``drop_next``).
``count``
    Drops in the current or most recent dropping episode. It survives leaving
    DROPPING: an episode that starts again soon after the last one resumes at
    ``count - 2`` (the reuse rule) instead of at 1.
``drop_next``
    Next scheduled drop while DROPPING, otherwise the last one scheduled.
``check_at``
    Before this time the check is a no-op (Erlang's ``timeout_next``).

Transitions
-----------

    from      event                                  to
    --------  -------------------------------------  ---------------------------------
    OK        a slow request is examined while       SLOW, first_drop = now + interval
              len > min_len
    SLOW      the head is slow at or after           DROPPING: drop it, count = 1, or
              first_drop                             count - 2 if the last episode
                                                     was recent (reuse rule)
    DROPPING  the head is slow at or after           drop it, count += 1,
              drop_next                              drop_next += interval/sqrt(count)
    any       handle_out finds or leaves the queue   OK
              empty or shorter than min_len; fifo:
              it serves a fast request; lifo: it
              serves the last request fast, due

The check (C5) runs after enqueue, timeout, cancel, remove, init and
reconfiguration; the dequeue path differs between fifo (C7: judge the request
being served) and lifo (C8: serve the newest, judge the head).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from math import sqrt

import attrs

from sbroker import _validators
from sbroker._types import DropEnd, Out
from sbroker._units import to_ns
from sbroker.queues._base import (
    DequePolicy,
    DequeState,
    drop_field,
    max_len_field,
    min_len_field,
    out_field,
)
from sbroker.queues._protocol import DropCallback, Request


class _Mode(enum.Enum):
    """Where a CoDel queue is in its cycle (C2)."""

    OK = "ok"
    SLOW = "slow"
    DROPPING = "dropping"


# Module-level aliases: the hot path compares modes by identity.
_OK = _Mode.OK
_SLOW = _Mode.SLOW
_DROPPING = _Mode.DROPPING


class _CodelState(DequeState):
    """The mutable CoDel state of one queue (C2); times are int ns."""

    __slots__ = (
        "_check_at",
        "_count",
        "_drop_next",
        "_first_drop",
        "_interval",
        "_mode",
        "_target",
    )

    def __init__(
        self, policy: CodelQueue, requests: Sequence[Request], on_drop: DropCallback
    ) -> None:
        super().__init__(policy, requests, on_drop)
        # The real initial values are set by start(now) (C2); these only make
        # the object complete before that.
        self._mode = _OK
        self._first_drop = 0
        self._count = 0
        self._drop_next = 0
        self._check_at = 0

    def _adopt(self, policy: CodelQueue) -> None:
        super()._adopt(policy)
        self._target = to_ns(policy.target)
        self._interval = to_ns(policy.interval)

    # -- helpers (C3) -------------------------------------------------------

    def _step(self, count: int) -> int:
        """The control law: the gap before the next drop after ``count`` drops."""
        return int(self._interval / sqrt(count))

    def _reset(self, now: int) -> None:
        self._mode = _OK
        self._check_at = now

    def _go_slow(self, now: int) -> None:
        self._mode = _SLOW
        self._first_drop = self._check_at = now + self._interval

    def _start_drops(self, now: int) -> None:
        """Schedule after the first drop of an episode, applying the reuse rule."""
        count = self._count
        if count > 2 and now - self._drop_next < 8 * self._interval:
            count -= 2
        else:
            count = 1
        self._count = count
        self._mode = _DROPPING
        self._drop_next = self._check_at = now + self._step(count)

    def _advance(self) -> None:
        """Schedule after a further drop in DROPPING: from the old schedule, not from now."""
        count = self._count + 1
        self._count = count
        self._drop_next += self._step(count)
        self._check_at = self._drop_next

    def _wake(self) -> int | None:
        """C4: the wake time after an operation."""
        return self._check_at if len(self._entries) - self._dead > self._min_len else None

    # -- the check (C5) -----------------------------------------------------

    def start(self, now: int) -> int | None:
        """C11: initial state (C2), then trim (Q12), then the check."""
        self._mode = _OK
        self._count = 0
        self._first_drop = now
        self._drop_next = now
        self._check_at = now
        return self._trim_and_check(now)

    def _check(self, now: int) -> int | None:
        queue = self._entries
        min_len = self._min_len
        if len(queue) - self._dead <= min_len:
            return None
        if self._check_at <= now:
            self._evaluate(now, min_len)
            if len(queue) - self._dead <= min_len:
                return None
        return self._check_at

    def handle_in(self, request: Request, now: int) -> int | None:
        """Q11 admission, then the check (C5), whose gate is tested here first."""
        queue = self._entries
        if self._max_len is None:  # self._admit, inlined for the unbounded queue
            self._members.add(request)
            queue.append(request)
        else:
            self._admit(request, now)
        if len(queue) - self._dead <= self._min_len:
            return None
        check_at = self._check_at
        return check_at if check_at > now else self._check(now)

    def _evaluate(self, now: int, floor: int) -> None:
        """Judge the head; drop while due (C5). Precondition: ``len > floor``."""
        queue = self._entries
        target = self._target
        head = queue[0]
        deadline = head.send_time + target
        if deadline > now:
            self._check_at = deadline  # fast: look again when it turns slow
            return
        mode = self._mode
        if mode is _OK:
            self._go_slow(now)
            return
        self._popleft()
        self._on_drop(head, now)
        if mode is _SLOW:
            self._start_drops(now)
            return
        self._advance()
        # Catch up with a schedule that fell behind (a late timer).
        on_drop = self._on_drop
        while len(queue) - self._dead > floor and self._drop_next <= now:
            head = queue[0]
            deadline = head.send_time + target
            if deadline > now:
                self._check_at = deadline  # C15: never drop a fast request
                return
            self._popleft()
            on_drop(head, now)
            self._advance()

    # -- dequeue (C7, C8) ---------------------------------------------------

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        """Serve the head (fifo, C7) or the tail (lifo, C8), dropping slow heads when due."""
        if self._lifo:
            return self._lifo_out(now)
        queue = self._entries
        if not queue:
            if self._mode is not _OK:
                self._reset(now)
            return None
        request = queue.popleft()  # _popleft inlined
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        min_len = self._min_len
        left = len(queue) - self._dead
        if left < min_len:
            self._mode = _OK  # the queue is now short
            self._check_at = now
            return request, None
        deadline = request.send_time + self._target
        if deadline > now:
            self._mode = _OK  # a fast dequeue: the queue is healthy
            self._check_at = deadline
            return request, (deadline if left > min_len else None)
        check_at = self._check_at
        if check_at > now:
            return request, (check_at if left > min_len else None)
        mode = self._mode
        if mode is _OK:
            self._go_slow(now)  # the first slow dequeue
            return request, self._wake()
        return self._fifo_drop(request, now, mode is _SLOW)

    def _fifo_drop(
        self, request: Request, now: int, first: bool
    ) -> tuple[Request, int | None] | None:
        """C7 after the decision to drop ``request``, the slow head just dequeued.

        In DROPPING the drop's ``count`` increment is deferred until the next
        request proves slow as well (N6).
        """
        queue = self._entries
        on_drop = self._on_drop
        min_len = self._min_len
        target = self._target
        on_drop(request, now)
        if first:
            self._start_drops(now)
        while True:
            if not queue:
                self._reset(now)
                return None
            before = len(queue) - self._dead
            request = self._popleft()
            if before == min_len:
                self._reset(now)  # serving it leaves fewer than min_len
                return request, None
            deadline = request.send_time + target
            if deadline > now:
                self._mode = _OK
                self._check_at = deadline
                return request, self._wake()
            if first:
                return request, self._wake()
            self._advance()
            if self._drop_next > now:
                return request, self._wake()
            on_drop(request, now)

    def _lifo_out(self, now: int) -> tuple[Request, int | None] | None:
        """C8: serve the newest request; judge and drop from the head."""
        queue = self._entries
        if not queue:
            if self._mode is not _OK:
                self._reset(now)
            return None
        request = self._pop()
        left = len(queue) - self._dead
        min_len = self._min_len
        if left < min_len:
            self._reset(now)
            return request, None
        check_at = self._check_at
        if check_at > now:
            return request, (check_at if left > min_len else None)
        if left == 0:
            if request.send_time + self._target > now:
                self._reset(now)
                return request, None
            return self._last(request, now)
        # The request being served still counts towards min_len (C9).
        self._evaluate(now, min_len - 1 if min_len else 0)
        left = len(queue) - self._dead
        if left == 0 and min_len == 0:
            return self._last(request, now)
        if left < min_len:
            self._reset(now)
        return request, self._wake()

    def _last(self, request: Request, now: int) -> tuple[Request, None] | None:
        """C8 ``last``: ``request`` is the only one left (and ``min_len`` is 0)."""
        mode = self._mode
        if mode is _OK:
            self._go_slow(now)
            return request, None
        if mode is _DROPPING:
            if self._drop_next <= now and request.send_time + self._target <= now:  # C15
                self._on_drop(request, now)
                self._advance()
                self._reset(now)
                return None
        elif self._first_drop <= now:  # SLOW
            self._on_drop(request, now)
            self._start_drops(now)
            self._reset(now)
            return None
        return request, None

    # -- reconfiguration and fair queues (C12, C13) -------------------------

    def config_change(self, policy: CodelQueue, now: int) -> int | None:
        """C12: keep the CoDel state, take the new parameters, clamp the schedule."""
        self._adopt(policy)
        self._trim(now)
        limit = now + self._interval
        mode = self._mode
        if mode is _SLOW and self._first_drop > limit:
            self._first_drop = self._check_at = limit
        if self._drop_next > limit:
            self._drop_next = limit
            if mode is _DROPPING:
                self._check_at = limit
        if mode is _OK:
            self._check_at = now
        return self._check(now)

    def _remove_time(self, now: int) -> int:
        """C13: once the reuse rule can no longer apply, the empty state may go."""
        return max(self._drop_next + 8 * self._interval, now)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} len={len(self)} mode={self._mode.name}"
            f" count={self._count} drop_next={self._drop_next} check_at={self._check_at}>"
        )


@attrs.frozen
class CodelQueue(DequePolicy):
    """A queue managed by CoDel: drops requests once the queue stays slow.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    A request is slow once it has waited ``target`` seconds. When requests
    keep being slow for ``interval`` seconds, the head is dropped, then
    further heads at intervals that shrink with the square root of the number
    of drops, until a request is served fast again. A request that is still
    fast is never dropped by CoDel (only by ``max_len``).

    Args:
        target: seconds of waiting after which a request is slow (``>= 0``;
            ``0`` makes every request slow).
        interval: seconds (``> 0``, at least 1 ns) the queue must stay slow
            before the first drop; also the base of the drop schedule.
        out: ``"fifo"`` serves the oldest request, ``"lifo"`` the newest.
        drop: at ``max_len``, ``"tail"`` drops the arriving request,
            ``"head"`` drops the oldest one to make room.
        min_len: CoDel never drops below this many waiting requests (a
            dequeue counts the request it serves).
        max_len: ``None`` (unbounded) or the most requests held.
    """

    target: float = attrs.field(default=0.1, validator=_validators.duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    out: Out = out_field("fifo", "lifo")
    drop: DropEnd = drop_field()
    min_len: int = min_len_field()
    max_len: int | None = max_len_field()

    _state_class = _CodelState
