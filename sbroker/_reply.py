"""Request/reply over a broker: ``broker.call(value)`` and ``broker.serve(handler)``.

A ``Go`` means *matched*, not *served*. A client that wants the worker's
answer sends a :class:`Job` as its ``ask`` value; the worker that is matched
with it finishes the job and answers through it. ``call`` waits for that
answer after the match; ``serve`` is the worker loop that runs a handler for
each job and answers with its return value or its error.

Guarantees: every job a worker takes is answered exactly once. A handler
that raises answers the caller :class:`~sbroker.WorkerFailed` (the handler's
exception is its ``__cause__``); a worker cancelled mid-job answers
``WorkerFailed`` before the cancellation propagates. A caller cancelled while
its job runs cancels the handler for that job only; the worker serves on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import outcome
import trio

from sbroker._errors import BrokerClosed, Dropped, WorkerFailed
from sbroker._results import Drop

if TYPE_CHECKING:
    from sbroker._broker import Broker


class Job:
    """A client's request on its way to a worker, and the way back.

    Attributes:
        value: what the client asked with.

    A worker that takes a ``Job`` from a plain ``ask_r`` must answer it with
    :meth:`reply` or :meth:`fail`; :meth:`Broker.serve` does that itself.
    """

    __slots__ = ("_answer", "_done", "_scope", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._answer: outcome.Outcome[Any] | None = None
        self._done = trio.Event()
        self._scope = trio.CancelScope()  # cancelled when the caller gives up

    @property
    def abandoned(self) -> bool:
        """``True`` once the caller has stopped waiting (it was cancelled)."""
        return self._scope.cancel_called

    def reply(self, result: Any) -> bool:
        """Answer the caller with ``result``; ``False`` if already answered or abandoned."""
        return self._settle(outcome.Value(result))

    def fail(self, error: BaseException) -> bool:
        """Answer the caller :class:`~sbroker.WorkerFailed` caused by ``error``.

        ``False`` if the job was already answered or abandoned.
        """
        failure = WorkerFailed(f"the worker failed: {error!r}")
        failure.__cause__ = error
        return self._settle(outcome.Error(failure))

    def _settle(self, answer: outcome.Outcome[Any]) -> bool:
        if self._answer is not None or self.abandoned:
            return False
        self._answer = answer
        self._done.set()
        return True

    async def _result(self) -> Any:
        """The caller's side: wait for the answer; on cancellation, abandon the job."""
        try:
            await self._done.wait()
        except BaseException:
            if self._answer is None:
                self._scope.cancel()  # stop the handler working for nobody
            raise
        assert self._answer is not None
        return self._answer.unwrap()

    async def _run(self, handler: Callable[[Any], Awaitable[Any]]) -> None:
        """The worker's side: run ``handler`` on the value and answer with what it gives."""
        with self._scope:
            try:
                result = await handler(self.value)
            except Exception as exc:
                self.fail(exc)
                return
            except BaseException as exc:  # cancelled (not by the caller) or interrupted
                if not self.abandoned:
                    self.fail(exc)
                raise
            self.reply(result)

    def __repr__(self) -> str:
        state = "abandoned" if self.abandoned else "waiting" if self._answer is None else "answered"
        return f"<Job {state} value={self.value!r}>"


async def call(broker: Broker, value: Any) -> Any:
    """Send ``value`` to a worker as a :class:`Job`; return the worker's reply.

    Raises :class:`~sbroker.Dropped` when the ask queue drops the request,
    :class:`~sbroker.WorkerFailed` when the worker failed.
    """
    job = Job(value)
    result = await broker.ask(job)
    if isinstance(result, Drop):
        raise Dropped(result)
    return await job._result()


async def serve(broker: Broker, handler: Callable[[Any], Awaitable[Any]], value: Any) -> None:
    """Take jobs with ``ask_r(value)`` and answer each with ``await handler(job.value)``.

    Returns when the broker closes.
    """
    if not callable(handler):
        raise TypeError(f"handler must be an async callable, got {handler!r}")
    while True:
        try:
            result = await broker.ask_r(value)
        except BrokerClosed:
            return
        if isinstance(result, Drop):
            continue
        job = result.value
        if not isinstance(job, Job):
            raise TypeError(
                f"serve() was matched with a plain ask({job!r}); clients must use call()"
            )
        await job._run(handler)
