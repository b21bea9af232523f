"""The contract between a queue policy and the host (broker or regulator) driving it.

A *policy* is an immutable configuration value (``TimeoutQueue(timeout=1.0)``);
``policy.init(...)`` creates the mutable *state* of one queue. Every operation
on a state takes the current time ``now`` (integer nanoseconds, never
decreasing, queues.md Q1) and returns the *wake time* ``W``: the time at which
the host must call :meth:`QueueState.handle_timeout` unless another operation
happens first, or ``None`` for "no timer needed" (Q6).

Dropping: a policy decides drops and reports each dropped request, exactly
once, through the ``on_drop(request, now)`` callback it was created with,
before the operation returns (Q4). The host answers it ``Drop``. Requests
returned by :meth:`QueueState.handle_out` are answered by the host; cancelled,
removed and handed-over requests are not answered by the policy.

The policy never reads a clock, sleeps or wakes a task: that is what makes it
exactly testable with synthetic times.

Optional: a state may offer ``cancel_requests(tag, requests, now) -> (n, W)``,
``handle_cancel`` given the host's requests under ``tag`` (a superset of the
queued ones with that tag), so cancelling a tag costs O(len(requests)) rather
than a scan of the queue. Hosts call it when present, else ``handle_cancel``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

#: The next global arrival number (``Request.seq``).
next_sequence = itertools.count().__next__


class Request:
    """A queued request, as a policy sees it.

    Policies read ``send_time`` (int ns, when the request was made), ``value``
    (the caller's value, used by :class:`~sbroker.queues.FairQueue` keys) and
    ``tag`` (matched by ``handle_cancel``). ``seq`` is a global arrival number
    that breaks ties between equal send times (queues.md F11). Hosts subclass
    this to carry the means of answering the caller. Requests compare by
    identity, and a request is handed to a policy at most once.

    ``fair_key`` belongs to :class:`~sbroker.queues.FairQueue`: the key it
    filed the request under, computed once at enqueue, so that removing the
    request never calls the key function again; unset while the request is in
    no FairQueue. Hosts and custom policies leave it alone.
    """

    __slots__ = ("fair_key", "send_time", "seq", "tag", "value")
    fair_key: Hashable

    def __init__(self, send_time: int, value: Any = None, tag: Hashable = None) -> None:
        self.send_time = send_time
        self.value = value
        self.tag = tag
        self.seq = next_sequence()

    def __repr__(self) -> str:
        return f"<Request value={self.value!r} send_time={self.send_time} tag={self.tag!r}>"


#: Called by a policy for each request it drops: ``on_drop(request, now)``.
DropCallback = Callable[[Request, int], None]


@runtime_checkable
class QueueState(Protocol):
    """The mutable state of one queue, created by :meth:`QueuePolicy.init`.

    Every method taking ``now`` returns (or includes) the new wake time ``W``:
    an ``int >= now`` or ``None``. Each returned ``W`` replaces the previous one.
    """

    def handle_in(self, request: Request, now: int) -> int | None:
        """Enqueue ``request`` (admission rule Q11), then run the time-based check."""
        ...

    def handle_out(self, now: int) -> tuple[Request, int | None] | None:
        """Remove and return the next request to serve with the new ``W``.

        ``None`` means the queue is empty (``W`` is then ``None``). The policy
        may drop requests before answering either way.
        """
        ...

    def fq_out(self, now: int) -> tuple[Request | None, int | None]:
        """``handle_out`` for use inside a FairQueue (F5).

        Returns ``(request, W)``, or ``(None, remove_time)`` when empty:
        the time after which the empty sub-queue's state may be forgotten.
        """
        ...

    def handle_timeout(self, now: int) -> int | None:
        """Run the time-based check."""
        ...

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, int | None]:
        """Remove every queued request whose tag equals ``tag``, unanswered.

        Returns how many were removed (0 if none) and ``W``.
        """
        ...

    def remove(self, request: Request, now: int) -> int | None:
        """The caller of ``request`` gave up: remove it if queued (unanswered), then check."""
        ...

    def config_change(self, policy: Any, now: int) -> int | None:
        """Adopt the parameters of ``policy`` (same class as this state's policy)."""
        ...

    def __len__(self) -> int:
        """Number of queued requests; no side effects."""
        ...

    def send_time(self) -> int | None:
        """Send time of the oldest queued request, or ``None`` if empty; no side effects."""
        ...

    def terminate(self) -> list[Request]:
        """Return the remaining requests, oldest first, unanswered; the state is dead after."""
        ...

    # Optional, not part of the checked protocol:
    #
    # def snapshot(self) -> list[Request] | None:
    #     """The requests ``terminate`` would return, in its order, changing nothing.
    #
    #     ``None`` means "not available". Hosts use it to prepare a change to a
    #     policy of another class without touching the running state; without
    #     it they terminate the state and, if the new policy's ``init`` fails,
    #     rebuild it with the running policy's ``init`` from the same requests.
    #     """


@runtime_checkable
class QueuePolicy(Protocol):
    """An immutable queue-policy configuration: the factory of :class:`QueueState`.

    ``init`` creates a state holding ``requests`` (oldest first, possibly
    empty), reporting drops through ``on_drop``, and returns it with its first
    wake time. A host reconfigures a queue by calling
    ``state.config_change(new_policy, now)`` when ``type(new_policy)`` is the
    type of the running policy, otherwise by ``new_policy.init(state.terminate(), now, on_drop)``.
    ``init`` may also be called on a trial basis, to check that a new
    configuration can take the queued requests before anything changes: it
    must not act on anything but the state it creates.
    """

    def init(
        self, requests: Sequence[Request], now: int, on_drop: DropCallback
    ) -> tuple[QueueState, int | None]:
        """Create the state of one queue holding ``requests``; return it with ``W``."""
        ...
