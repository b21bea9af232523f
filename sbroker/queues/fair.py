"""FairQueue: round-robin service over one sub-queue per key (queues.md §5).

Theory of operation
-------------------

Requests are sorted into sub-queues by a key computed from their value (F2).
Each sub-queue is an ordinary queue-policy state created from the template
policy, so every key gets its own drop rules (timeouts, CoDel, ``max_len``)
and nothing a busy key does can make another key's requests wait longer in
their own sub-queue. Fairness comes from the service order: ``robin`` is a
deque holding every *active* key once, ``handle_out`` serves the key at its
front and moves it to the back (F5), so with ``n`` busy keys each one gets
every ``n``-th turn whatever its arrival rate.

A sub-queue that ``handle_out`` finds empty leaves ``robin``. It is either
forgotten at once, or, when its ``fq_out`` asks for it (CoDel wants to
remember a recent dropping episode for its reuse rule), *parked*: kept, with
the time until which its memory is worth keeping. A parked key that sees a new
request is revived with its old state; parked sub-queues past their removal
time are discarded lazily at the end of most operations (F6, N10). Removal
times never cause a wake-up.

Wake times: each active sub-queue has a recorded wake time ``W`` (the last one
it returned). The fair queue's ``W`` is the minimum of them (F9), and a
sub-queue whose recorded ``W`` has been reached is *due*: it is given a
``handle_timeout`` as part of whatever operation comes next (F7), so one host
timer serves all sub-queues.

Keys. A request's key is computed once, when it arrives (or when a new key
function re-sorts the queue), and remembered on the request
(``request.fair_key``): removing a cancelled request looks it up there, so no
user code runs while trio aborts a task, and a value mutated while it waits
is still found in the sub-queue it was filed in. A request that leaves (served,
dropped, removed, cancelled) is marked unfiled, so a stale key never reaches
another request's sub-queue.

Cost. The host calls ``handle_in`` and ``handle_out`` for every request, so
they must not scan all sub-queues. Recorded wake times sit in a heap of
``(W, counter, key)`` entries invalidated lazily: ``_wake_entry[key]`` names
the one live entry of each key, older entries are skipped when they surface,
and the heap is rebuilt when stale entries outnumber live ones. Finding the
due sub-queues and the minimum ``W`` is therefore O(log n) amortised when
little is due; parked removal times use a second heap of the same shape. The
total length is kept as a running count, adjusted around every sub-queue call
by the difference of that sub-queue's length, so drops made inside a
sub-queue are counted without the fair layer seeing them. ``send_time`` uses
a third heap, of ``(oldest send time, counter, key)``: an entry may be older
than its key's head (the head only ever gets younger), so the top is checked
against its sub-queue and, if stale, replaced by the current value; the top
is the answer once it is exact. ``remove`` and ``cancel_requests`` touch only
the sub-queues of the requests concerned; ``handle_cancel(tag)``, which is
given no requests, visits every active sub-queue.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import Any

import attrs

from sbroker.queues._protocol import DropCallback, QueuePolicy, QueueState, Request
from sbroker.queues.codel import CodelQueue

#: A key function: maps a request's value to its (hashable) key.
KeyFunction = Callable[[Any], Hashable]

_MAX_BUCKETS = 2**32
_SLACK = 32  # stale heap entries tolerated before a rebuild, beyond 2 per live entry
_NO_KEY: Any = object()  # "no sub-queue": an unfiled request, or nothing to skip in _run_due
_arrival_order = operator.attrgetter("send_time", "seq")


def _check_template(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, FairQueue):
        raise TypeError(f"{attribute.name} must not be a FairQueue, got {value!r}")
    if isinstance(value, type) or not isinstance(value, QueuePolicy):
        raise TypeError(
            f"{attribute.name} must be a queue policy instance such as TimeoutQueue() "
            f"or CodelQueue(), got {value!r}"
        )


def _check_key(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name} must be None or a callable, got {value!r}")


def _check_buckets(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be None or an int, got {value!r}")
    if not 1 <= value <= _MAX_BUCKETS:
        raise ValueError(f"{attribute.name} must be in 1 .. 2**32, got {value!r}")


def _key_function(key: KeyFunction | None, buckets: int | None) -> Callable[[Any], Hashable]:
    """F2: the function from a request value to its sub-queue key."""
    if key is None:
        if buckets is None:
            return lambda value: value
        return lambda value: hash(value) % buckets
    if buckets is None:
        return key
    return lambda value: hash(key(value)) % buckets


class _FairState:
    """The mutable state of one fair queue (F3); see the module docstring."""

    __slots__ = (
        "_active",
        "_age_heap",
        "_aged",
        "_counter",
        "_key_of",
        "_len",
        "_on_drop",
        "_park_heap",
        "_parked",
        "_policy",
        "_robin",
        "_template",
        "_wake_entry",
        "_wake_heap",
    )

    def __init__(self, policy: FairQueue, on_drop: DropCallback) -> None:
        self._on_drop = on_drop
        self._counter = itertools.count()
        self._reset(policy)

    def _reset(self, policy: FairQueue) -> None:
        """Take ``policy`` as the configuration and forget every sub-queue."""
        self._policy = policy
        self._template = policy.queue
        self._key_of = _key_function(policy.key, policy.buckets)
        # key -> sub-queue state; the keys are exactly those in _robin.
        self._active: dict[Hashable, QueueState] = {}
        self._robin: deque[Hashable] = deque()
        # key -> (empty sub-queue state, remove_time, heap counter)
        self._parked: dict[Hashable, tuple[QueueState, int, int]] = {}
        self._park_heap: list[tuple[int, int, Hashable]] = []
        # Recorded wake times: key -> (W, heap counter) for active keys whose W is
        # not None; each has exactly one live (W, counter, key) in _wake_heap.
        self._wake_entry: dict[Hashable, tuple[int, int]] = {}
        self._wake_heap: list[tuple[int, int, Hashable]] = []
        # Oldest send times (F9): one (send time, counter, key) per key in _aged,
        # at most the send time of that key's head while it is active; every
        # active key with requests is in _aged.
        self._aged: set[Hashable] = set()
        self._age_heap: list[tuple[int, int, Hashable]] = []
        self._len = 0

    def _build(
        self,
        policy: FairQueue,
        requests: Sequence[Request],
        now: int,
        keys: Sequence[Hashable] | None = None,
    ) -> int | None:
        """F10: take over ``requests`` under ``policy``; return ``W``.

        ``keys`` are the requests' keys if known, else the key function computes them.
        """
        if keys is None:  # all keys first: a failing key function changes nothing
            key_of = _key_function(policy.key, policy.buckets)
            keys = [key_of(request.value) for request in requests]
        groups: dict[Hashable, list[Request]] = {}
        for request, key in zip(requests, keys, strict=True):
            request.fair_key = key
            groups.setdefault(key, []).append(request)
        self._reset(policy)
        template = self._template
        for key, group in groups.items():  # in order of each key's oldest request
            sub, wake = template.init(group, now, self._dropped)
            self._activate(key, sub)
            self._len += len(sub)
            self._record(key, wake)
        return self._wake()

    def _activate(self, key: Hashable, sub: QueueState) -> None:
        """Make ``sub`` the active sub-queue of ``key``, last in the robin."""
        self._active[key] = sub
        self._robin.append(key)
        if key not in self._aged:
            self._age(key, sub)

    def _age(self, key: Hashable, sub: QueueState) -> None:
        """Give the active ``key`` an entry in the age heap, unless ``sub`` is empty."""
        send_time = sub.send_time()
        if send_time is not None:
            self._aged.add(key)
            heapq.heappush(self._age_heap, (send_time, next(self._counter), key))

    # Recorded wake times (F7, F9) ------------------------------------------

    def _record(self, key: Hashable, wake: int | None) -> None:
        """Record ``wake`` as the last ``W`` of the active sub-queue ``key``."""
        entries = self._wake_entry
        if wake is None:
            entries.pop(key, None)  # its heap entry, if any, is now stale
            return
        entry = entries.get(key)
        if entry is not None and entry[0] == wake:
            return
        count = next(self._counter)
        entries[key] = (wake, count)
        heap = self._wake_heap
        heapq.heappush(heap, (wake, count, key))
        if len(heap) > 2 * len(entries) + _SLACK:
            heap[:] = [(w, c, k) for k, (w, c) in entries.items()]
            heapq.heapify(heap)

    def _wake(self) -> int | None:
        """F9: the minimum recorded ``W`` of the active sub-queues."""
        heap = self._wake_heap
        entries = self._wake_entry
        while heap:
            wake, count, key = heap[0]
            entry = entries.get(key)
            if entry is not None and entry[1] == count:
                return wake
            heapq.heappop(heap)
        return None

    def _run_due(self, now: int, skip: Collection[Hashable] = ()) -> None:
        """F7: ``handle_timeout`` every due sub-queue not in ``skip``, once each."""
        heap = self._wake_heap
        entries = self._wake_entry
        due: list[tuple[Hashable, int]] = []
        while heap and heap[0][0] <= now:
            wake, count, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry[1] == count:
                del entries[key]
                due.append((key, wake))
        active = self._active
        for key, wake in due:
            if key in skip:
                self._record(key, wake)  # put its entry back
                continue
            sub = active[key]
            before = len(sub)
            new_wake = sub.handle_timeout(now)
            self._len += len(sub) - before
            self._record(key, new_wake)

    def _dropped(self, request: Request, now: int) -> None:
        """A sub-queue dropped ``request``: it is no longer filed; answer it (Q4)."""
        request.fair_key = _NO_KEY
        self._on_drop(request, now)

    def _finish(self, now: int, skip: Hashable = _NO_KEY) -> int | None:
        """End an operation: run the due sub-queues but ``skip`` (F7), prune (F6), ``W`` (F9)."""
        heap = self._wake_heap
        if heap and heap[0][0] <= now:
            self._run_due(now, () if skip is _NO_KEY else (skip,))
        heap = self._park_heap
        if heap and heap[0][0] <= now:
            self._prune(now)
        return self._wake()

    # Parking (F5, F6) --------------------------------------------------------

    def _deactivate(self, key: Hashable) -> None:
        del self._active[key]
        self._wake_entry.pop(key, None)

    def _park(self, key: Hashable, sub: QueueState, remove_time: int) -> None:
        count = next(self._counter)
        self._parked[key] = (sub, remove_time, count)
        heap = self._park_heap
        heapq.heappush(heap, (remove_time, count, key))
        if len(heap) > 2 * len(self._parked) + _SLACK:
            heap[:] = [(t, c, k) for k, (_, t, c) in self._parked.items()]
            heapq.heapify(heap)

    def _prune(self, now: int) -> None:
        """F6: forget every parked sub-queue whose removal time has come."""
        heap = self._park_heap
        parked = self._parked
        while heap and heap[0][0] <= now:
            _, count, key = heapq.heappop(heap)
            entry = parked.get(key)
            if entry is not None and entry[2] == count:
                del parked[key]

    # The queue-state protocol ---------------------------------------------

    def handle_in(self, request: Request, now: int) -> int | None:
        """F4: enqueue into the request's sub-queue, reviving or creating it.

        The key is computed here, once, and remembered on the request.
        """
        request.fair_key = key = self._key_of(request.value)
        sub = self._active.get(key)
        if sub is not None:  # 1. active
            before = len(sub)
            wake = sub.handle_in(request, now)
            self._len += len(sub) - before
            if key not in self._aged:  # it was empty
                self._age(key, sub)
        else:
            parked = self._parked.pop(key, None)  # its heap entry goes stale
            if parked is not None:  # 2. parked: revive
                sub = parked[0]
                before = len(sub)
                wake = sub.handle_in(request, now)
                self._len += len(sub) - before
            else:  # 3. new
                sub, wake = self._template.init([request], now, self._dropped)
                self._len += len(sub)
            self._activate(key, sub)
        self._record(key, wake)
        return self._finish(now, key)

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        """F5: serve the sub-queue at the front of the robin, parking empty ones."""
        robin = self._robin
        active = self._active
        while robin:
            key = robin.popleft()
            sub = active[key]
            before = len(sub)
            request, wake = sub.fq_out(now)
            self._len += len(sub) - before
            if request is not None:
                request.fair_key = _NO_KEY  # served: no longer filed
                robin.append(key)
                self._record(key, wake)
                return request, self._finish(now, key)
            # Empty: `wake` is the removal time. None is taken as "forget now".
            self._deactivate(key)
            if wake is not None and wake > now:
                self._park(key, sub, wake)
        self._prune(now)
        return None

    def fq_out(self, now: int) -> tuple[Request | None, int | None]:
        """``handle_out`` with the protocol's nested shape; ``(None, now)`` when empty.

        A FairQueue cannot be a FairQueue template (F1); this exists for hosts
        that treat every state alike.
        """
        item = self.handle_out(now)
        return (None, now) if item is None else item

    def handle_timeout(self, now: int) -> int | None:
        """F7: run every due sub-queue, prune parked ones."""
        return self._finish(now)

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:
        """F8: cancel ``tag`` in every active sub-queue; return the total removed.

        A scan of every request (hosts that know the requests under ``tag``
        call :meth:`cancel_requests`); the cancelled ones are unfiled where the
        sub-queue offers ``snapshot()``.
        """
        removed = 0
        for key, sub in self._active.items():
            snapshot = getattr(sub, "snapshot", None)
            for request in () if snapshot is None else snapshot():
                if request.tag == tag:
                    request.fair_key = _NO_KEY
            before = len(sub)
            count, wake = sub.handle_cancel(tag, now)
            self._len += len(sub) - before
            removed += count
            self._record(key, wake)
        self._prune(now)
        return removed, self._wake()

    def cancel_requests(
        self, tag: Hashable, requests: Iterable[Request], now: int
    ) -> tuple[int, int | None]:
        """F8 for hosts that know the requests under ``tag``: only their sub-queues are visited.

        ``requests`` must include every queued request tagged ``tag``. Each
        concerned sub-queue cancels its share (in O(share) when it offers
        ``cancel_requests`` itself), then the other due sub-queues run.
        """
        active = self._active
        groups: dict[Hashable, list[Request]] = {}
        for request in requests:
            key = getattr(request, "fair_key", _NO_KEY)
            if key in active:
                groups.setdefault(key, []).append(request)
        removed = 0
        for key, group in groups.items():
            sub = active[key]
            before = len(sub)
            cancel = getattr(sub, "cancel_requests", None)
            if cancel is None:
                count, wake = sub.handle_cancel(tag, now)
            else:
                count, wake = cancel(tag, group, now)
            self._len += len(sub) - before
            removed += count
            self._record(key, wake)
            for request in group:
                if request.tag == tag:  # cancelled, or not queued at all
                    request.fair_key = _NO_KEY
        heap = self._wake_heap
        if heap and heap[0][0] <= now:
            self._run_due(now, groups)
        self._prune(now)
        return removed, self._wake()

    def remove(self, request: Request, now: int) -> int | None:
        """F8: remove ``request`` from its key's sub-queue; run the other due ones.

        The sub-queue is the one the request was filed in (its remembered
        key): the key function is not called again.
        """
        key = getattr(request, "fair_key", _NO_KEY)
        sub = self._active.get(key)
        if sub is None:  # not queued (a parked sub-queue is empty)
            return self._finish(now)
        before = len(sub)
        wake = sub.remove(request, now)
        request.fair_key = _NO_KEY
        self._len += len(sub) - before
        self._record(key, wake)
        return self._finish(now, key)

    def config_change(self, policy: Any, now: int) -> int | None:
        """F12: reconfigure every sub-queue in place, or re-sort all requests.

        With the same ``key`` (identity) and ``buckets``, each sub-queue, active
        or parked, takes the new template: by ``config_change`` when the
        template class is unchanged, else by handing its requests to a fresh
        state of the new class. Parked sub-queues become active again, appended
        to the robin in the order they were parked. Otherwise every request is
        taken over by a fresh fair queue under ``policy`` (F10).
        """
        if not isinstance(policy, FairQueue):
            raise TypeError(f"config_change needs a FairQueue, got {policy!r}")
        old = self._policy
        if policy.key is not old.key or policy.buckets != old.buckets:
            requests = self.terminate()
            keys = [request.fair_key for request in requests]
            try:
                return self._build(policy, requests, now)
            except BaseException:
                self._build(old, requests, now, keys)  # keep the requests under the old keys
                raise
        template = policy.queue
        same_class = type(template) is type(old.queue)
        on_drop = self._dropped
        self._policy = policy
        self._template = template

        def adopt(sub: QueueState) -> tuple[QueueState, int | None]:
            if same_class:
                return sub, sub.config_change(template, now)
            return template.init(sub.terminate(), now, on_drop)

        active = self._active
        for key, sub in list(active.items()):
            before = len(sub)
            new_sub, wake = adopt(sub)
            active[key] = new_sub
            self._len += len(new_sub) - before
            self._record(key, wake)
        parked = self._parked
        self._parked = {}
        self._park_heap = []
        for key, (sub, _, _) in parked.items():
            before = len(sub)
            new_sub, wake = adopt(sub)
            self._activate(key, new_sub)
            self._len += len(new_sub) - before
            self._record(key, wake)
        return self._wake()

    def __len__(self) -> int:
        """F9: the number of requests in all sub-queues."""
        return self._len

    def send_time(self) -> int | None:
        """F9: the oldest send time over all sub-queues, or ``None``: O(log n) amortised.

        Only the bookkeeping of the age heap changes (stale tops are refreshed).
        """
        heap = self._age_heap
        aged = self._aged
        active = self._active
        while heap:
            send_time, _, key = heap[0]
            sub = active.get(key)
            current = None if sub is None else sub.send_time()
            if current == send_time:
                return send_time
            if current is None:
                heapq.heappop(heap)
                aged.discard(key)
            else:  # the head left: its key's entry moves to the new head's time
                heapq.heapreplace(heap, (current, next(self._counter), key))
        return None

    def terminate(self) -> list[Request]:
        """F11: every request, by send time, ties in arrival order; the state is emptied."""
        requests: list[Request] = []
        for sub in self._active.values():
            requests.extend(sub.terminate())
        for sub, _, _ in self._parked.values():
            requests.extend(sub.terminate())
        self._reset(self._policy)
        requests.sort(key=_arrival_order)
        return requests

    def snapshot(self) -> list[Request] | None:
        """``terminate``'s order (F11) without changes; ``None`` if a sub-queue has no snapshot."""
        requests: list[Request] = []
        subs = itertools.chain(self._active.values(), (sub for sub, _, _ in self._parked.values()))
        for sub in subs:
            sub_snapshot = getattr(sub, "snapshot", None)
            held = None if sub_snapshot is None else sub_snapshot()
            if held is None:
                return None
            requests.extend(held)
        requests.sort(key=_arrival_order)
        return requests

    def __repr__(self) -> str:
        return (
            f"<FairQueue state len={self._len} active={len(self._active)} "
            f"parked={len(self._parked)}>"
        )

    # Read-only introspection for tests ------------------------------------

    def _robin_keys(self) -> list[Hashable]:
        """The active keys in service order."""
        return list(self._robin)

    def _parked_until(self) -> dict[Hashable, int]:
        """Parked keys and their removal times."""
        return {key: remove_time for key, (_, remove_time, _) in self._parked.items()}

    def _wakes(self) -> dict[Hashable, int | None]:
        """The recorded ``W`` of each active key."""
        entries = self._wake_entry
        return {key: (entries[key][0] if key in entries else None) for key in self._active}

    def _sub_queue(self, key: Hashable) -> QueueState | None:
        """The state of the active or parked sub-queue ``key``, or ``None``."""
        if key in self._active:
            return self._active[key]
        parked = self._parked.get(key)
        return None if parked is None else parked[0]


@attrs.frozen
class FairQueue:
    """Round-robin service over one sub-queue per key (Nagle's fair queuing).

    Each request goes to the sub-queue of its key; ``handle_out`` serves the
    sub-queues in turn, one request each, so a key with many waiting requests
    cannot starve the others. Each sub-queue is a fresh state of ``queue`` and
    applies that policy's rules (``min_len``/``max_len`` are per sub-queue;
    there is no overall limit). An emptied CoDel sub-queue is remembered for a
    while so that its recent dropping history still counts if the key returns.

    Args:
        queue: the template policy for every sub-queue: a ``DropQueue``,
            ``TimeoutQueue``, ``CodelQueue`` or ``AdaptiveQueue`` instance (any
            queue policy except a FairQueue). Default ``CodelQueue()``.
        key: ``None`` to key requests by their value, or a callable mapping a
            value to its key. Keys must be hashable; the function must be pure
            (it is called again to find a request that is withdrawn).
        buckets: ``None``, or an int in ``1 .. 2**32``: keys are hashed into
            that many sub-queues (``hash(key) % buckets``). Python's ``hash`` of
            ``str`` and ``bytes`` differs between processes.
    """

    queue: QueuePolicy = attrs.field(factory=CodelQueue, validator=_check_template)
    key: KeyFunction | None = attrs.field(default=None, validator=_check_key)
    buckets: int | None = attrs.field(default=None, validator=_check_buckets)

    def init(
        self, requests: Sequence[Request], now: int, on_drop: DropCallback
    ) -> tuple[_FairState, int | None]:
        """Create the state of one fair queue holding ``requests`` (F10); return it with ``W``."""
        state = _FairState(self, on_drop)
        return state, state._build(self, requests, now)
