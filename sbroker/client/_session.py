"""One socket connection to the server: a writer, a reader and per-msgid slots.

Theory of operation. A call packs its request, registers a *slot* under a
fresh msgid (unsigned 32-bit, never one still in flight), appends the bytes
to the outbox and parks. The writer task sends whatever the outbox holds; the
reader task unpacks responses and hands each to the slot of its msgid, which
wakes its caller (or settles a :class:`RemotePending`). A slot leaves the
table only when its response arrives or the connection is lost, so a msgid is
never reused while the server may still answer it and a late reply can only
ever reach the slot it was meant for.

A caller cancelled by trio while parked sends the notification
``["cancel_request", [msgid]]`` (protocol.md S6) and keeps waiting for the
server's one answer: the result that won the race is returned (a ``Go`` made
before the cancel arrived stands, as in-process), and the answer
``cancelled`` turns into the caller's ``trio.Cancelled``. When the connection
is lost every slot fails with :class:`ConnectionFailed`, and every monitor
reports ``"noconnection"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped]
import outcome
import trio

from sbroker.client._errors import ConnectionFailed

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
MSGID_LIMIT = 2**32
#: The reason a monitor reports when the connection it was made on is lost.
NO_CONNECTION = "noconnection"
RECEIVE_BYTES = 65536


class Slot(Protocol):
    """What waits for the response of one msgid."""

    def deliver(self, error: Any, result: Any) -> None:
        """The server answered: ``error`` is ``None`` or ``[code, message]``."""

    def fail(self, exc: ConnectionFailed) -> None:
        """The connection was lost before the answer arrived."""


class Monitor:
    """Waits for the ``down`` notification of one monitored match (protocol.md S9).

    ``reason`` is ``None`` until it arrives, then ``"closed"``, ``"done"``,
    ``"noproc"``, or ``"noconnection"`` if this client's own connection was lost.
    """

    __slots__ = ("_event", "name", "reason", "ref")

    def __init__(self, name: str, ref: Hashable) -> None:
        self.name = name
        self.ref = ref
        self.reason: str | None = None
        self._event = trio.Event()

    async def wait(self) -> str:
        """Wait until the counterparty is down; return the reason."""
        await self._event.wait()
        assert self.reason is not None
        return self.reason

    def _down(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    def __repr__(self) -> str:
        return f"<Monitor {self.name!r} ref={self.ref!r} reason={self.reason!r}>"


class _Call:
    """The slot of a caller parked until its response arrives."""

    __slots__ = ("_raise_cancel", "_session", "msgid", "task")

    def __init__(self, session: Session, msgid: int) -> None:
        self._session = session
        self.msgid = msgid
        self.task = trio.lowlevel.current_task()
        self._raise_cancel: Callable[[], Any] | None = None

    def abort(self, raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
        """trio cancelled the caller: ask the server to withdraw, wait for its answer."""
        self._raise_cancel = raise_cancel
        self._session.notify("cancel_request", [self.msgid])
        return trio.lowlevel.Abort.FAILED

    def deliver(self, error: Any, result: Any) -> None:
        """Wake the caller with ``(error, result)``, or its cancellation if withdrawn."""
        raise_cancel = self._raise_cancel
        if raise_cancel is not None and type(error) is list and error and error[0] == "cancelled":
            trio.lowlevel.reschedule(self.task, outcome.capture(raise_cancel))
        else:
            trio.lowlevel.reschedule(self.task, outcome.Value((error, result)))

    def fail(self, exc: ConnectionFailed) -> None:
        """Wake the caller with ``exc`` (or its own cancellation, if it was cancelled)."""
        raise_cancel = self._raise_cancel
        failure = outcome.capture(raise_cancel) if raise_cancel is not None else outcome.Error(exc)
        trio.lowlevel.reschedule(self.task, failure)


class Reply:
    """A slot whose answer is kept until someone asks for it (async requests).

    ``await wait()`` returns ``(error, result)`` or raises :class:`ConnectionFailed`;
    any number of tasks may wait, and cancelling a waiting task does not
    withdraw the request.
    """

    __slots__ = ("_event", "failure", "msgid", "answer", "session")

    def __init__(self, session: Session, msgid: int) -> None:
        self.session = session
        self.msgid = msgid
        self.answer: tuple[Any, Any] | None = None
        self.failure: ConnectionFailed | None = None
        self._event = trio.Event()

    @property
    def settled(self) -> bool:
        """Whether the answer (or the connection's loss) has arrived."""
        return self._event.is_set()

    def deliver(self, error: Any, result: Any) -> None:
        """Keep the answer and wake the waiters."""
        self.answer = (error, result)
        self._event.set()

    def fail(self, exc: ConnectionFailed) -> None:
        """Keep the failure and wake the waiters."""
        self.failure = exc
        self._event.set()

    async def wait(self) -> tuple[Any, Any]:
        """Wait for the answer: ``(error, result)``; raise :class:`ConnectionFailed` if lost."""
        await self._event.wait()
        if self.failure is not None:
            raise self.failure
        assert self.answer is not None
        return self.answer

    def withdraw(self) -> None:
        """Send ``cancel_request`` for this request (S6); its answer still comes."""
        if not self.settled:
            self.session.notify("cancel_request", [self.msgid])


class Session:
    """One connection's stream, outbox, in-flight table and monitors.

    :meth:`run` drives the stream until it fails or :meth:`close` is called;
    then every slot has been failed and every monitor told.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        max_message_bytes: int,
        on_lost: Callable[[Session], None],
    ) -> None:
        self._stream = stream
        self.address = address
        self._on_lost = on_lost
        self._inflight: dict[int, Slot] = {}
        self._monitors: dict[tuple[Any, Any], list[Monitor]] = {}
        self._outbox: list[bytes] = []
        self._writer_wakeup = trio.lowlevel.ParkingLot()
        self._writer_busy = False  # the writer task holds bytes it has not sent yet
        # A plain socket is written synchronously when nothing is pending (see _write).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._msgid = 0
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=max_message_bytes + RECEIVE_BYTES
        )
        self._lost: ConnectionFailed | None = None
        self._scope = trio.CancelScope()

    @property
    def alive(self) -> bool:
        """``False`` once the connection is lost or closed."""
        return self._lost is None

    # -- sending -----------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._lost is not None:
            raise ConnectionFailed(str(self._lost))

    def _next_msgid(self) -> int:
        msgid = self._msgid
        inflight = self._inflight
        while True:
            msgid = msgid + 1 if msgid + 1 < MSGID_LIMIT else 0
            if msgid not in inflight:
                self._msgid = msgid
                return msgid

    def _write(self, data: bytes) -> None:
        """Send ``data`` in order after everything before it, never blocking.

        The hot path: when nothing is queued, a plain socket takes the bytes
        at once with one non-blocking ``write`` (no task switch; a synchronous
        call cannot be cut in half by a cancellation). Whatever it does not
        take goes to the writer task.
        """
        if self._fd is not None and not self._outbox and not self._writer_busy:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # the writer task meets the same error and reports it
            if sent == len(data):
                return
            data = data[sent:]
        self._outbox.append(data)
        self._writer_wakeup.unpark()

    def notify(self, method: str, params: list[Any]) -> None:
        """Send a notification (no answer); nothing if the connection is lost."""
        if self._lost is None:
            self._write(self._pack([NOTIFICATION, method, params]))

    async def call(self, method: str, params: list[Any]) -> tuple[Any, Any]:
        """Send a request and wait for ``(error, result)`` (see the module doc on cancellation).

        Raises :class:`ConnectionFailed` if the connection is (or gets) lost.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_alive()
        msgid = self._next_msgid()
        data = self._pack([REQUEST, msgid, method, params])  # may raise: nothing registered yet
        slot = _Call(self, msgid)
        self._inflight[msgid] = slot
        self._write(data)
        return await trio.lowlevel.wait_task_rescheduled(slot.abort)  # type: ignore[no-any-return]

    def start(self, method: str, params: list[Any]) -> Reply:
        """Send a request whose answer is kept in the returned :class:`Reply`."""
        self._check_alive()
        msgid = self._next_msgid()
        data = self._pack([REQUEST, msgid, method, params])
        reply = Reply(self, msgid)
        self._inflight[msgid] = reply
        self._write(data)
        return reply

    # -- monitors ----------------------------------------------------------------

    def watch(self, name: str, ref: Hashable) -> Monitor:
        """Register a monitor before its request is sent (a ``down`` may come first)."""
        self._check_alive()
        monitor = Monitor(name, ref)
        self._monitors.setdefault((name, ref), []).append(monitor)
        return monitor

    def unwatch(self, monitor: Monitor) -> None:
        """Forget a monitor whose request failed."""
        watchers = self._monitors.get((monitor.name, monitor.ref), [])
        if monitor in watchers:
            watchers.remove(monitor)
            if not watchers:
                del self._monitors[monitor.name, monitor.ref]

    def _down(self, params: Any) -> None:
        if type(params) is not list or len(params) != 3:
            return
        name, ref, reason = params
        try:
            watchers = self._monitors.pop((name, ref), [])
        except TypeError:  # an unhashable ref: nobody can be watching it
            return
        for monitor in watchers:
            monitor._down(str(reason))

    # -- the tasks -----------------------------------------------------------------

    async def run(self) -> None:
        """Write and read until the connection fails or is closed; then fail what waits."""
        reason = "connection closed"
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    reason = await self._read_loop()
                    nursery.cancel_scope.cancel()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            reason = f"connection lost: {exc or type(exc).__name__}"
        finally:
            self._lose(ConnectionFailed(f"{self.address}: {reason}"))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)

    async def _write_loop(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                await self._writer_wakeup.park()
                continue
            data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
            outbox.clear()
            self._writer_busy = True
            await self._stream.send_all(data)
            self._writer_busy = False

    async def _read_loop(self) -> str:
        unpacker = self._unpacker
        inflight = self._inflight
        while True:
            data = await self._receive()
            if not data:
                return "the server closed the connection"
            try:
                unpacker.feed(data)
                for message in unpacker:
                    if type(message) is list and len(message) == 4 and message[0] == RESPONSE:
                        slot = inflight.pop(message[1], None)
                        if slot is not None:
                            slot.deliver(message[2], message[3])
                    elif type(message) is list and len(message) == 3 and message[0] == NOTIFICATION:
                        if message[1] == "down":
                            self._down(message[2])
                    else:
                        return f"protocol error: unexpected message {message!r:.100}"
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                return f"protocol error: {exc}"

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the server (``b""`` at its end of file).

        On a plain socket: wait until readable, then read, one system call
        fewer than trying first, which on a request-response stream finds
        nothing to read nearly every time.
        """
        fd = self._fd
        if fd is None:
            return await self._stream.receive_some(RECEIVE_BYTES)
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, RECEIVE_BYTES)
            except BlockingIOError:
                continue

    def close(self) -> None:
        """Close the connection: what waits fails at once, and :meth:`run` returns."""
        self._lose(ConnectionFailed(f"{self.address}: connection closed"))
        self._scope.cancel()

    def _lose(self, exc: ConnectionFailed) -> None:
        """Fail every slot, tell every monitor, then ``on_lost(self)``: all at once."""
        if self._lost is not None:
            return
        self._lost = exc
        inflight, self._inflight = self._inflight, {}
        for slot in inflight.values():
            slot.fail(exc)
        monitors, self._monitors = self._monitors, {}
        for watchers in monitors.values():
            for monitor in watchers:
                monitor._down(NO_CONNECTION)
        self._outbox.clear()
        self._on_lost(self)
