"""``RemotePending``: the handle of an async request made over a connection."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from sbroker._errors import RequestCancelled
from sbroker._results import Drop, Go
from sbroker.client._errors import error_from_wire
from sbroker.client._session import Reply

Result = Go | Drop


class RemotePending:
    """The remote twin of :class:`sbroker.Pending`, returned once the request is sent.

    * ``tag``: the tag given, or a fresh unique one (a str) that ``cancel(tag)`` accepts.
    * ``result``: ``None`` until the answer arrives, then the ``Go``/``Drop``.
    * ``await wait()``: the answer. Raises :class:`~sbroker.RequestCancelled`
      if the request was cancelled (``await pending.cancel()`` or
      ``await broker.cancel(tag)``), :class:`~sbroker.BrokerClosed`,
      :class:`~sbroker.client.RemoteError` or
      :class:`~sbroker.client.ConnectionFailed`. Cancelling a waiting task
      does not withdraw the request.
    * ``await cancel()``: a coroutine here (the in-process one is
      synchronous): withdraws the request (``cancel_request``, S6) and waits
      for the server's one answer; ``True`` if it was removed, ``False`` if
      it had been answered first.
    """

    __slots__ = ("_decode", "_reply", "tag")

    def __init__(self, tag: Hashable, reply: Reply, decode: Callable[[Any], Result]) -> None:
        self.tag = tag
        self._reply = reply
        self._decode = decode

    @property
    def result(self) -> Result | None:
        """The ``Go``/``Drop`` once answered, else ``None``."""
        answer = self._reply.answer
        if answer is None or answer[0] is not None:
            return None
        return self._decode(answer[1])

    @property
    def cancelled(self) -> bool:
        """Whether the server answered ``cancelled``: the request was removed unanswered."""
        answer = self._reply.answer
        return answer is not None and _is_cancelled(answer[0])

    async def wait(self) -> Result:
        """Wait for the answer and return it (see the class doc for the errors)."""
        error, result = await self._reply.wait()
        if error is not None:
            if _is_cancelled(error):
                raise RequestCancelled(f"request {self.tag!r} was cancelled")
            raise error_from_wire(error)
        return self._decode(result)

    async def cancel(self) -> bool:
        """Withdraw the request if still queued; ``True`` if it was removed."""
        if self._reply.settled:
            return False
        self._reply.withdraw()
        try:
            await self._reply.wait()
        except OSError:
            return False
        return self.cancelled

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else self.result
        return f"<RemotePending tag={self.tag!r} {state}>"


def _is_cancelled(error: Any) -> bool:
    return isinstance(error, list) and bool(error) and error[0] == "cancelled"
