"""AdaptiveQueue: a waiting-time cap that tightens under congestion (queues.md §5a).

Theory of operation
-------------------

CoDel raises its drop rate with the square root of the number of drops. That
suits senders that slow down when they see drops, but a request queue usually
faces open-loop load: callers keep arriving however many of them are turned
away. Under sustained overload CoDel's rate then lags behind the arrivals and
the waiting times keep growing.

This policy caps the waiting time directly instead. The state is the queue
and ``empty_at``, the last time the queue was seen empty (in effect, when it
last became non-empty). A queue that keeps emptying is healthy: it drains
whatever bursts it gets, so a request may wait up to ``timeout``. A queue that
has stayed non-empty for ``interval`` is congested (A3): it has a standing
backlog, a request that has already waited ``target`` is unlikely to be served
while its caller still cares, and the cap drops to ``target``. The cap is
applied at the current time, so the moment congestion begins every request
that has waited ``target`` goes at once, not just later arrivals (A4).

Optionally (``out="adaptive"``) the queue serves the newest request while
congested and the oldest otherwise: under a backlog the newest callers are the
ones most likely still to be waiting for an answer.

The check drops from the head only: send times grow along the queue, so the
head is always the first to exceed the cap. The wake time (A8) is therefore
the head's deadline under the current cap, or, while not congested, the moment
congestion would begin (``empty_at + interval``) if that comes first.

Every path that finds or leaves the queue empty resets ``empty_at`` (A2): an
arrival at an empty queue (``handle_in``), and the end of any check or
``handle_out`` that leaves it empty (drops, serving, cancel, remove, trims).
Replacing the only request at ``max_len=1`` with head drop does not count.
"""

from __future__ import annotations

import attrs

from sbroker import _validators
from sbroker._types import AdaptiveOut, DropEnd
from sbroker._units import optional_ns, to_ns
from sbroker.queues._base import (
    DequePolicy,
    DequeState,
    drop_field,
    max_len_field,
    min_len_field,
    out_field,
)
from sbroker.queues._protocol import Request


class _AdaptiveState(DequeState):
    """The queue and ``empty_at`` (A2), with ``congestion_at = empty_at + interval``.

    Congestion (A3) is then one comparison, ``now >= congestion_at``, and the
    wake time while not congested (A8) needs no arithmetic of its own.
    ``congestion_at`` is read only while the queue holds requests, and the
    queue only fills through an arrival at an empty queue (which sets both,
    A5) or ``start``: emptying the queue sets ``empty_at`` alone.
    """

    __slots__ = ("_adaptive", "_congestion_at", "_empty_at", "_interval", "_target", "_timeout")

    _empty_at: int
    _congestion_at: int

    def _adopt(self, policy: AdaptiveQueue) -> None:
        super()._adopt(policy)
        self._adaptive = policy.out == "adaptive"
        self._target = to_ns(policy.target)
        self._timeout = optional_ns(policy.timeout)
        self._interval = to_ns(policy.interval)
        try:
            self._congestion_at = self._empty_at + self._interval  # A7: keeps empty_at
        except AttributeError:
            pass  # the first adoption: start() sets both

    def start(self, now: int) -> int | None:
        self._empty_at = now  # A2: init, also when taking over requests
        self._congestion_at = now + self._interval
        return self._trim_and_check(now)

    def _expire(self, now: int) -> bool:
        """A4: drop heads past the current limit while more than ``min_len`` wait.

        Returns whether the queue is congested at ``now`` (A3); only meaningful
        while the queue is non-empty. Congestion cannot change during the loop:
        ``empty_at`` only moves when the queue empties, which ends the loop.
        """
        congested = now >= self._congestion_at
        queue = self._entries
        min_len = self._min_len
        if len(queue) - self._dead > min_len:
            limit = self._target if congested else self._timeout
            if limit is not None:
                deadline = now - limit
                on_drop = self._on_drop
                while len(queue) - self._dead > min_len and queue[0].send_time <= deadline:
                    on_drop(self._popleft(), now)
        return congested

    def _check(self, now: int) -> int | None:
        """A4, then the wake time (A8); found or left empty: ``empty_at = now`` (A2)."""
        queue = self._entries
        if len(queue) - self._dead > self._min_len:
            # The common case first: the head is within the limit, nothing to drop.
            head = queue[0].send_time
            congestion_at = self._congestion_at
            if now >= congestion_at:  # congested (A3)
                expiry = head + self._target
                if expiry > now:
                    return expiry
            else:
                timeout = self._timeout
                if timeout is None:
                    return congestion_at
                expiry = head + timeout
                if expiry > now:
                    return expiry if expiry < congestion_at else congestion_at
            self._expire(now)
            return self._check(now)  # the head is now within the limit: the fast path
        elif queue:
            return None
        self._empty_at = now  # A2: found or left empty
        return None

    def handle_in(self, request: Request, now: int) -> int | None:
        """A5: an arrival at an empty queue restarts ``empty_at``; then Q11 and A4."""
        queue = self._entries
        if not queue:  # A5
            self._empty_at = now
            self._congestion_at = now + self._interval
        if self._max_len is None:  # self._admit, inlined for the unbounded queue
            self._members.add(request)
            queue.append(request)
        else:
            self._admit(request, now)
        return self._check(now)

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        """A6: check, then serve the head, or the tail (lifo; adaptive when congested)."""
        queue = self._entries
        if not queue:  # (the check would drop nothing)
            self._empty_at = now
            return None
        congested = now >= self._congestion_at
        limit = self._target if congested else self._timeout
        if limit is not None and queue[0].send_time + limit <= now:
            self._expire(now)  # the head is due: A4 first (congestion cannot change)
            if not queue:
                self._empty_at = now
                return None
        # _pop/_popleft inlined
        if self._lifo or (self._adaptive and congested):
            request = queue.pop()
        else:
            request = queue.popleft()
        self._members.discard(request)
        if self._dead:
            self._discard_dead_ends()
        # A8, with nothing due: every head past the limit was dropped above.
        if len(queue) - self._dead <= self._min_len:
            if not queue:
                self._empty_at = now  # A2: left empty
            return request, None
        if congested:
            return request, queue[0].send_time + self._target
        congestion_at = self._congestion_at
        timeout = self._timeout
        if timeout is None:
            return request, congestion_at
        expiry = queue[0].send_time + timeout
        return request, (expiry if expiry < congestion_at else congestion_at)


def _check_timeout(policy: AdaptiveQueue) -> None:
    """A1: ``timeout`` is ``None`` or at least ``target``, compared in ns."""
    if policy.timeout is not None and to_ns(policy.timeout) < to_ns(policy.target):
        raise ValueError(
            f"timeout must be None or >= target ({policy.target!r}), got {policy.timeout!r}"
        )


@attrs.frozen
class AdaptiveQueue(DequePolicy):
    """A queue that caps waiting at ``timeout``, tightened to ``target`` under congestion.

    Limits: every duration is at most ``10**9`` seconds and every count at
    most ``2**31``; ``nan`` and larger values raise ``ValueError`` naming the
    parameter.

    The queue is congested once it has stayed non-empty for ``interval``.
    While congested, a request that has waited ``target`` is dropped; otherwise
    a request is dropped once it has waited ``timeout``. Drops always take the
    oldest request and never leave fewer than ``min_len`` waiting.

    Args:
        target: seconds a request may wait while the queue is congested.
        interval: seconds the queue must stay non-empty to count as congested
            (at least 1 ns).
        timeout: seconds a request may wait while the queue is not congested
            (``None``: forever); must be ``>= target``.
        out: ``"fifo"`` serves the oldest request, ``"lifo"`` the newest,
            ``"adaptive"`` the newest while congested and the oldest otherwise.
        drop: at ``max_len``, ``"tail"`` drops the arriving request,
            ``"head"`` drops the oldest one to make room.
        min_len: time-based drops never go below this many waiting requests.
        max_len: ``None`` (unbounded) or the most requests held.
    """

    target: float = attrs.field(default=0.1, validator=_validators.duration())
    interval: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    timeout: float | None = attrs.field(
        default=5.0, validator=_validators.duration(allow_none=True)
    )
    out: AdaptiveOut = out_field("fifo", "lifo", "adaptive")
    drop: DropEnd = drop_field()
    min_len: int = min_len_field()
    max_len: int | None = max_len_field()

    _state_class = _AdaptiveState

    def __attrs_post_init__(self) -> None:
        _check_timeout(self)
        super().__attrs_post_init__()
