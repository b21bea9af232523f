"""The wire protocol of one server connection, without I/O (protocol.md sections 1, 4, 6).

Theory of operation
-------------------

A :class:`ServerProtocol` is the state of one connection's byte streams, in
the style of h11: the socket code feeds it the bytes it receives
(:meth:`~ServerProtocol.receive_data`), pulls events out of it
(:meth:`~ServerProtocol.next_event`) until it answers ``None`` (more bytes
are needed), and asks it for the bytes of each response or notification it
wants to send (:meth:`~ServerProtocol.respond`, :meth:`~ServerProtocol.reject`,
:meth:`~ServerProtocol.notify`). It never touches a socket, a clock or trio,
so every rule below is tested without sockets.

Framing (S2). The input is a sequence of MessagePack objects, one message
each, read with msgpack's streaming ``Unpacker`` (``raw=False``: str as str,
bin as bytes; arrays as tuples so that any value can be a tag). The unpacker
parses incrementally and forgets the bytes it has parsed, so its buffer
limit alone does not bound a message. The protocol therefore counts the
bytes of the message being read itself, and never feeds the unpacker more
than the message may still take: a message that reaches
``max_message_bytes`` without being complete is too large (S10), and so is
one that declares a str, bin, array, map or ext longer than that. Every
``max_*_len`` of the unpacker is set from ``max_message_bytes`` too.

Events. Each complete message becomes one event:

=========================================  ==========================================
message                                    event
=========================================  ==========================================
``[0, msgid, method, params]``, all valid  :class:`Request` (its msgid now in flight)
request whose msgid is in flight           :class:`Rejected` ``bad_request`` (S3)
request beyond ``max_in_flight``           :class:`Rejected` ``overloaded`` (S10)
request, valid msgid, bad method/params    :class:`Rejected` ``bad_request``
any other type with a readable msgid       :class:`Rejected` ``bad_request``
``[2, method, params]``, all valid         :class:`Notification`
anything else (no msgid to answer)         :class:`Fatal` ``bad_request``, no msgid
bytes that are not MessagePack             :class:`Fatal` ``bad_request``
a message over the size limit              :class:`Fatal` ``too_large``
=========================================  ==========================================

A :class:`Fatal` event ends the input: the stream cannot be resynchronised,
so the server answers the msgid it carries (read from the head of the bad
message when it starts like a request) and closes the connection (S12).

In-flight table (S3). A request's msgid stays in flight from its
:class:`Request` event until :meth:`~ServerProtocol.respond` packs its
response, which retires it; so a msgid is answered exactly once and can be
reused only after its response. :meth:`~ServerProtocol.reject` answers a
rejected message without touching the table (the msgid it reused keeps its
own pending answer).
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_MSGID",
    "Fatal",
    "Limits",
    "Notification",
    "Rejected",
    "Request",
    "ServerProtocol",
    "is_msgid",
]

#: S2: msgids are unsigned 32-bit ints.
MAX_MSGID = 2**32 - 1
#: S10 defaults.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 10_000

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
_HEAD_BYTES = 16  # enough for the array header, the type and a uint32 msgid


def is_msgid(value: object) -> bool:
    """S2: a msgid is an int (not a bool) in ``0 .. 2**32 - 1``."""
    return type(value) is int and 0 <= value <= MAX_MSGID


@attrs.frozen
class Limits:
    """The per-connection limits of S10 that the protocol enforces."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT


@attrs.frozen
class Request:
    """A valid request; its msgid is in flight until :meth:`ServerProtocol.respond`."""

    msgid: int
    method: str
    params: tuple[Any, ...]


@attrs.frozen
class Notification:
    """A valid notification (``[2, method, params]``); never answered."""

    method: str
    params: tuple[Any, ...]


@attrs.frozen
class Rejected:
    """A message answered with an error at once (:meth:`ServerProtocol.reject`)."""

    msgid: int
    code: str
    message: str


@attrs.frozen
class Fatal:
    """The input cannot go on: answer ``msgid`` (when not ``None``), then close."""

    code: str
    message: str
    msgid: int | None


Event = Request | Notification | Rejected | Fatal


class ServerProtocol:
    """One connection's framing, validation and in-flight table (see the module's docstring)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        size = limits.max_message_bytes
        self._limits = limits
        self._max_bytes = size
        self._unpacker = msgpack.Unpacker(
            raw=False,
            use_list=False,
            strict_map_key=False,
            max_buffer_size=size,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=size,
        )
        self._packer = msgpack.Packer(use_bin_type=True)
        self._input = bytearray()  # received, not yet fed to the unpacker
        self._fed = 0  # bytes fed to the unpacker so far
        self._message_start = 0  # stream offset of the message being read
        self._head = bytearray()  # its first bytes, to read a msgid from when it is bad
        self._last_chunk = b""  # the bytes fed last
        self._in_flight: set[int] = set()
        self._dead = False
        self._drained = True  # next_event found no more bytes: nothing fed is unparsed

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes; ignored once a :class:`Fatal` event has ended the input."""
        if self._dead:
            return
        if self._drained and self._fed - self._message_start + len(data) <= self._max_bytes:
            # the common case: every event was taken and the current message may take
            # all of it, so it goes to the unpacker at once, without a copy
            self._drained = False
            self._feed_chunk(bytes(data))
        else:
            self._input += data

    def next_event(self) -> Event | None:
        """The next event, or ``None`` until more bytes arrive (or for good after Fatal)."""
        while not self._dead:
            try:
                message = self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._fed - self._message_start >= self._limits.max_message_bytes:
                    # incomplete at the limit: the message is over it
                    return self._fatal(
                        "too_large", f"message over {self._limits.max_message_bytes} bytes"
                    )
                if not self._input:
                    self._drained = True
                    return None
                self._feed()
                continue
            except ValueError as exc:
                too_large = "exceeds max_" in str(exc)
                return self._fatal(
                    "too_large" if too_large else "bad_request",
                    f"message over {self._limits.max_message_bytes} bytes"
                    if too_large
                    else f"not MessagePack: {exc}",
                )
            except Exception as exc:  # msgpack raises a few other types on bad input
                return self._fatal("bad_request", f"not MessagePack: {exc}")
            # the message ended at the unpacker's position: the next one starts there
            end = self._unpacker.tell()
            self._message_start = end
            chunk = self._last_chunk
            offset = len(chunk) - (self._fed - end)  # where the next one starts in the chunk
            self._head = bytearray(chunk[offset : offset + _HEAD_BYTES])
            return self._event(message)
        return None

    def _feed(self) -> None:
        """Feed the unpacker as many input bytes as the current message may still take."""
        room = self._max_bytes - (self._fed - self._message_start)
        chunk = bytes(self._input[:room])
        del self._input[:room]
        self._feed_chunk(chunk)

    def _feed_chunk(self, chunk: bytes) -> None:
        """Feed ``chunk``, which the current message may still take, to the unpacker."""
        if len(self._head) < _HEAD_BYTES:
            self._head += chunk[: _HEAD_BYTES - len(self._head)]
        self._unpacker.feed(chunk)
        self._fed += len(chunk)
        self._last_chunk = chunk

    def _fatal(self, code: str, message: str, *, complete: bool = False) -> Fatal:
        """End the input. A bad stream answers the msgid its head shows, if any; a
        ``complete`` message that failed validation has shown it has none."""
        self._dead = True
        self._input.clear()
        return Fatal(code, message, None if complete else _peek_msgid(bytes(self._head)))

    def _event(self, message: Any) -> Event:
        """Validate one message (the table in the module's docstring)."""
        if type(message) is tuple and len(message) == 4:  # the hot path: a valid request
            kind, msgid, method, params = message
            in_flight = self._in_flight
            if (
                type(kind) is int
                and kind == REQUEST
                and type(msgid) is int
                and 0 <= msgid <= MAX_MSGID
                and type(method) is str
                and type(params) is tuple
                and msgid not in in_flight
                and len(in_flight) < self._limits.max_in_flight
            ):
                in_flight.add(msgid)
                return Request(msgid, method, params)
        if not isinstance(message, tuple) or not message:
            return self._fatal("bad_request", "a message must be a non-empty array", complete=True)
        kind = message[0]
        msgid = message[1] if len(message) >= 2 and is_msgid(message[1]) else None
        if type(kind) is int and kind == REQUEST:
            if msgid is None:
                return self._fatal(
                    "bad_request", "a request needs a msgid from 0 to 2**32-1", complete=True
                )
            return self._request(msgid, message)
        if type(kind) is int and kind == NOTIFICATION:
            if len(message) == 3 and isinstance(message[1], str) and isinstance(message[2], tuple):
                return Notification(message[1], message[2])
            return self._fatal(
                "bad_request", "a notification is [2, method, params]", complete=True
            )
        if msgid is None:
            return self._fatal(
                "bad_request", f"unknown message type {_describe(kind)}", complete=True
            )
        return Rejected(
            msgid, "bad_request", f"unknown message type {_describe(kind)} (a server takes 0, 2)"
        )

    def _request(self, msgid: int, message: tuple[Any, ...]) -> Event:
        if len(message) != 4:
            return Rejected(msgid, "bad_request", "a request is [0, msgid, method, params]")
        method, params = message[2], message[3]
        if not isinstance(method, str):
            return Rejected(msgid, "bad_request", "the method must be a str")
        if not isinstance(params, tuple):
            return Rejected(msgid, "bad_request", f"{method}: params must be an array")
        if msgid in self._in_flight:
            return Rejected(msgid, "bad_request", f"msgid {msgid} is still in flight")
        if len(self._in_flight) >= self._limits.max_in_flight:
            return Rejected(
                msgid, "overloaded", f"over {self._limits.max_in_flight} requests in flight"
            )
        self._in_flight.add(msgid)
        return Request(msgid, method, params)

    # -- output ----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """How many requests wait for their response."""
        return len(self._in_flight)

    def is_in_flight(self, msgid: int) -> bool:
        """Whether ``msgid`` is a request that has not been answered yet."""
        return msgid in self._in_flight

    def respond(self, msgid: int, error: tuple[str, str] | None, result: Any = None) -> bytes:
        """The bytes of the response to in-flight request ``msgid``; retires the msgid.

        ``error`` is ``(code, message)`` or ``None``. A result that cannot be
        packed is answered with the error ``internal`` instead.
        """
        self._in_flight.remove(msgid)
        return self._pack_response(msgid, error, result)

    def reject(self, rejected: Rejected | Fatal) -> bytes:
        """The bytes of the error response to a rejected message (the table is unchanged)."""
        assert rejected.msgid is not None
        return self._pack_response(rejected.msgid, (rejected.code, rejected.message), None)

    def notify(self, method: str, params: list[Any]) -> bytes:
        """The bytes of a notification ``[2, method, params]``."""
        return self._packer.pack([NOTIFICATION, method, params])  # type: ignore[no-any-return]

    def _pack_response(self, msgid: int, error: tuple[str, str] | None, result: Any) -> bytes:
        try:
            return self._packer.pack(  # type: ignore[no-any-return]
                [RESPONSE, msgid, None if error is None else list(error), result]
            )
        except (TypeError, ValueError, OverflowError):
            self._packer.reset()
            return self._packer.pack(  # type: ignore[no-any-return]
                [RESPONSE, msgid, ["internal", "the result could not be packed"], None]
            )


def _describe(kind: object) -> str:
    """A message type for an error message: an int as it is, never another value."""
    return str(kind) if type(kind) is int else f"of type {type(kind).__name__}"


def _peek_msgid(head: bytes) -> int | None:
    """The msgid of a message that starts like a request (``[0, msgid, ...``), else ``None``."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_HEAD_BYTES)
    unpacker.feed(head)
    try:
        if unpacker.read_array_header() < 2 or unpacker.unpack() != REQUEST:
            return None
        msgid = unpacker.unpack()
    except Exception:  # anything unreadable in the head: no msgid
        return None
    return msgid if is_msgid(msgid) else None
