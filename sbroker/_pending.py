"""How a host answers its queued requests: parked tasks and ``Pending`` handles.

A blocking call (``ask``) parks its task with
``trio.lowlevel.wait_task_rescheduled``; a :class:`TaskRequest` answers it by
rescheduling the task. An asynchronous call (``async_ask``) returns a
:class:`Pending`; a :class:`PendingRequest` answers it by settling the pending.
Either kind may be answered before its caller has parked (a policy can drop
the request inside ``handle_in``), so answers are stored until then.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Callable, Generator, Hashable
from typing import Any

import outcome
import trio

from sbroker._errors import RequestCancelled
from sbroker._results import Drop, Go
from sbroker.queues import QueueState, Request
from sbroker.queues._protocol import next_sequence

Result = Go | Drop

_tag_numbers = itertools.count(1)
cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint


class Token:
    """A unique value, equal only to itself, printed with a number: ``<tag 7>``.

    The number is drawn when the token is first printed, so that making one
    (once per granted permit) runs no Python code.
    """

    __slots__ = ("_number",)
    _number: int
    _label = "token"

    def __repr__(self) -> str:
        try:
            number = self._number
        except AttributeError:
            number = self._number = next(_tag_numbers)
        return f"<{self._label} {number}>"


class FreshTag(Token):
    """A unique tag made for an async request given none.

    ``request`` is the host's: the queued request filed under this tag (see
    :class:`TagRegistry`), or ``None``.
    """

    __slots__ = ("request",)
    _label = "tag"

    def __init__(self) -> None:
        self.request: PendingRequest | None = None


#: The tag of blocking requests: no caller can name it, so ``cancel`` never reaches them.
UNTAGGED = FreshTag()


_reschedule = trio.lowlevel.reschedule
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


class _Woken(outcome.Outcome[None]):
    """What wakes a parked task whose request was answered: the answer is on the request.

    ``wait_task_rescheduled`` returns ``next_send.unwrap()``; a parked request
    reads its answer from ``request.result`` instead, so one shared outcome
    serves every wake-up (an ``outcome.Value`` per answer costs ~0.3 us and
    may be unwrapped only once). It carries no value or error of its own, so
    unwrapping it any number of times is harmless.
    """

    __slots__ = ()

    def unwrap(self) -> None:
        """Nothing: the woken task reads its request's ``result``."""

    def send(self, gen: Generator[Any, None, object]) -> Any:
        """Resume ``gen`` with ``None``."""
        return gen.send(None)

    async def asend(self, agen: AsyncGenerator[Any, None]) -> Any:
        """Resume ``agen`` with ``None``."""
        return await agen.asend(None)


#: The one outcome every answered parked task is rescheduled with.
WOKEN = _Woken()


class TaskRequest(Request):
    """A queued request whose caller is (or is about to be) a parked task.

    The host queues it, then, unless the policy answered it at once (a drop
    on arrival), sets ``task`` and parks the caller with
    ``wait_task_rescheduled(request._abort)``; once woken, the caller returns
    ``result``. :meth:`answer` stores the answer in ``result`` and wakes a
    parked task with :data:`WOKEN`. ``abandon(request)`` removes the request
    from its queue when the task is cancelled while parked (the host passes
    one shared callable per queue).
    """

    __slots__ = ("abandon", "result", "task")
    tag = UNTAGGED  # never set: blocking requests have no tag a caller can name

    def __init__(self, send_time: int, value: Any, abandon: Callable[[TaskRequest], None]) -> None:
        # Request.__init__ inlined: this runs for every caller that waits.
        self.send_time = send_time
        self.value = value
        self.seq = next_sequence()
        self.abandon = abandon
        self.task: trio.lowlevel.Task | None = None
        self.result: Result | None = None

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        """trio's abort function: the parked task was cancelled."""
        self.task = None
        self.abandon(self)
        return _SUCCEEDED

    def answer(self, result: Result) -> None:
        """Store ``result``; wake the task if it has parked already."""
        self.result = result
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task, WOKEN)


class Pending:
    """The handle of an asynchronous request (``async_ask`` and friends).

    Guarantees:

    * ``result`` is ``None`` until the request is answered, then the
      :class:`~sbroker.Go` or :class:`~sbroker.Drop`; it never changes again.
    * ``await wait()`` returns the answer, at once if it is already settled.
      Any number of tasks may wait. Cancelling a waiting task (trio
      cancellation) does not cancel the request: it stays queued.
    * ``cancel()`` removes a still-queued request and returns ``True``; after
      that (or after ``broker.cancel(tag)`` removed it) ``wait()`` raises
      :class:`~sbroker.RequestCancelled` instead of hanging, and ``result``
      stays ``None``. It returns ``False`` if the request was already answered
      or cancelled.
    """

    # No closure per request: ``_withdraw`` is one callable per host queue,
    # called with the queued request.
    __slots__ = ("_event", "_request", "_withdraw", "result", "tag")

    def __init__(self, tag: Hashable) -> None:
        self.tag = tag
        self.result: Result | None = None
        self._event: trio.Event | None = None
        self._request: PendingRequest | None = None
        self._withdraw: Callable[[PendingRequest], bool] | None = None

    @classmethod
    def settled(cls, tag: Hashable, result: Result) -> Pending:
        """A pending that was answered at once."""
        pending = cls(tag)
        pending.result = result
        return pending

    @property
    def cancelled(self) -> bool:
        """``True`` once the request was removed by a cancel, unanswered."""
        return self.result is None and self._request is None

    async def wait(self) -> Result:
        """Wait for the answer and return it (a checkpoint even when already settled)."""
        if self._request is not None:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.result is None:
            raise RequestCancelled(f"request {self.tag!r} was cancelled")
        return self.result

    def cancel(self) -> bool:
        """Remove the request if it is still queued; ``True`` if it was."""
        request, withdraw = self._request, self._withdraw
        if request is None or withdraw is None:
            return False
        return withdraw(request)

    def _settle(self, result: Result) -> None:
        self.result = result
        self._request = None
        if self._event is not None:
            self._event.set()

    def _mark_cancelled(self) -> None:
        self._request = None
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else self.result
        return f"<Pending tag={self.tag!r} {state}>"


class PendingRequest(Request):
    """A queued request answered by settling a :class:`Pending`.

    The host hands it to its policy, then calls :meth:`register`: a policy
    that raises (a FairQueue key function) leaves nothing in the registry.
    """

    __slots__ = ("pending", "registry")

    def __init__(
        self,
        send_time: int,
        value: Any,
        pending: Pending,
        registry: TagRegistry,
        withdraw: Callable[[PendingRequest], bool] | None = None,
    ) -> None:
        # Request.__init__ inlined (fair_key stays unset until a FairQueue files it).
        self.send_time = send_time
        self.value = value
        self.tag = pending.tag
        self.seq = next_sequence()
        self.pending = pending
        self.registry = registry
        pending._request = self
        pending._withdraw = withdraw

    def register(self) -> None:
        """Index the request by its tag, now that its policy took it (unless it answered it)."""
        if self.pending.result is None:
            self.registry.add(self)

    def answer(self, result: Result) -> None:
        """Settle the pending with ``result``."""
        self.registry.discard(self)
        self.pending._settle(result)


class TagRegistry:
    """The queued asynchronous requests of a host, by tag.

    ``cancel(tag)`` removes requests from the policies, which only report how
    many; the registry tells the host whose pendings to mark cancelled, and
    gives policies that offer ``cancel_requests`` the requests to look at, so
    cancelling a tag costs O(its requests), not O(queue length). Every
    operation on one request is O(1).

    Memory per request is kept small, as most tags hold one request: a fresh
    tag (made for a request given none) holds its first request itself, and
    a tag with a single request maps to it directly; only a tag with several
    maps to an insertion-ordered dict of them.
    """

    __slots__ = ("_by_tag",)

    def __init__(self) -> None:
        self._by_tag: dict[Hashable, PendingRequest | dict[PendingRequest, None]] = {}

    def add(self, request: PendingRequest) -> None:
        """Register a queued request."""
        tag = request.tag
        if type(tag) is FreshTag and tag.request is None:
            tag.request = request
            return
        by_tag = self._by_tag
        held = by_tag.get(tag)
        if held is None:
            by_tag[tag] = request
        elif type(held) is dict:
            held[request] = None
        else:
            by_tag[tag] = {held: None, request: None}  # type: ignore[dict-item]

    def discard(self, request: PendingRequest) -> None:
        """Forget a request that was answered or removed (if registered)."""
        tag = request.tag
        if type(tag) is FreshTag and tag.request is request:
            tag.request = None
            return
        by_tag = self._by_tag
        held = by_tag.get(tag)
        if held is request:
            del by_tag[tag]
        elif type(held) is dict:
            held.pop(request, None)
            if not held:
                del by_tag[tag]

    def _held_by_tag(self, tag: Hashable) -> PendingRequest | None:
        """The request a fresh tag holds for this registry (a tag may reach other hosts)."""
        if type(tag) is FreshTag:
            request = tag.request
            if request is not None and request.registry is self:
                return request
        return None

    def _requests(self, tag: Hashable) -> list[PendingRequest]:
        requests = []
        held_by_tag = self._held_by_tag(tag)
        if held_by_tag is not None:
            requests.append(held_by_tag)
        held = self._by_tag.get(tag)
        if type(held) is dict:
            requests.extend(held)
        elif held is not None:
            requests.append(held)  # type: ignore[arg-type]
        return requests

    def withdraw(self, state: QueueState, tag: Hashable, now: int) -> tuple[int, int | None]:
        """Remove from ``state`` every queued request tagged ``tag``: ``(count, W)``.

        Uses the policy's optional ``cancel_requests(tag, requests, now)`` with
        the registered requests, else its ``handle_cancel(tag, now)``.
        """
        cancel_requests = getattr(state, "cancel_requests", None)
        if cancel_requests is None:
            return state.handle_cancel(tag, now)
        # A copy: drops made by the policy's check discard from the registry.
        count, wake = cancel_requests(tag, self._requests(tag), now)
        return count, wake

    def cancel(self, request: PendingRequest) -> None:
        """Forget a request its caller cancelled, and mark its pending cancelled."""
        self.discard(request)
        request.pending._mark_cancelled()

    def cancel_tag(self, tag: Hashable) -> None:
        """Mark cancelled every request under ``tag`` (the policies removed them)."""
        requests = self._requests(tag)
        if self._held_by_tag(tag) is not None:
            tag.request = None  # type: ignore[attr-defined]
        self._by_tag.pop(tag, None)
        for request in requests:
            request.pending._mark_cancelled()


def fresh_tag(tag: Hashable) -> Hashable:
    """The tag to use for an async request: the caller's, or a new unique one."""
    if tag is None:
        return FreshTag()
    try:
        hash(tag)
    except TypeError:
        raise TypeError(f"tag must be hashable, got {tag!r}") from None
    return tag
