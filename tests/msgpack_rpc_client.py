"""A generic MessagePack-RPC client written from protocol.md alone.

It imports nothing from sbroker: plain trio sockets and msgpack, as any
other language's client would be. The service tests speak to the server
through it, so they test the wire contract, not the Python client.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import trio


class RpcError(Exception):
    """An error response: ``[code, message]``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class RpcClient:
    """One connection: requests ``[0, msgid, method, params]``, notifications
    ``[2, method, params]``; responses matched by msgid, notifications kept in order."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self._msgids = itertools.count(1)
        self.responses: dict[int, tuple[Any, Any]] = {}
        self.notifications: list[list[Any]] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RpcClient:
        return cls(await trio.open_tcp_stream(host, port))

    @classmethod
    async def connect_unix(cls, path: str) -> RpcClient:
        return cls(await trio.open_unix_socket(path))

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, message: Any) -> None:
        await self.send_raw(msgpack.packb(message, use_bin_type=True))

    async def start(self, method: str, *params: Any, msgid: int | None = None) -> int:
        """Send a request; return its msgid."""
        msgid = next(self._msgids) if msgid is None else msgid
        await self.send([0, msgid, method, list(params)])
        return msgid

    async def notify(self, method: str, *params: Any) -> None:
        await self.send([2, method, list(params)])

    async def receive(self) -> list[Any] | None:
        """The next message from the server (``None`` at end of file)."""
        while True:
            try:
                return self._unpacker.unpack()  # type: ignore[no-any-return]
            except msgpack.OutOfData:
                pass
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                return None
            self._unpacker.feed(data)

    async def _pump(self) -> bool:
        message = await self.receive()
        if message is None:
            return False
        if message[0] == 1:
            _, msgid, error, result = message
            assert msgid not in self.responses, f"msgid {msgid} answered twice"
            self.responses[msgid] = (error, result)
        else:
            assert message[0] == 2, message
            self.notifications.append(message[2])
        return True

    async def response(self, msgid: int) -> tuple[Any, Any]:
        """``(error, result)`` of request ``msgid`` (reading until it arrives)."""
        while msgid not in self.responses:
            if not await self._pump():
                raise EOFError(f"connection closed before msgid {msgid} was answered")
        return self.responses.pop(msgid)

    async def result(self, msgid: int) -> Any:
        """The result of request ``msgid``, or raise its :class:`RpcError`."""
        error, result = await self.response(msgid)
        if error is not None:
            raise RpcError(*error)
        return result

    async def call(self, method: str, *params: Any) -> Any:
        return await self.result(await self.start(method, *params))

    async def notification(self) -> list[Any]:
        """The next notification's params."""
        while not self.notifications:
            if not await self._pump():
                raise EOFError("connection closed before a notification")
        return self.notifications.pop(0)

    async def closed(self) -> None:
        """Read until the server closes the connection."""
        while await self._pump():
            pass
