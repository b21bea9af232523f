"""The client's reader against a scripted peer: odd and bad server messages (S2, S12 mirrored)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgpack
import pytest
import trio

from sbroker.client import ConnectionFailed, connect

TIMEOUT = 10
Script = Callable[[trio.SocketStream, msgpack.Unpacker], Awaitable[None]]


async def scripted_peer(nursery: trio.Nursery, script: Script) -> str:
    """A one-connection server on 127.0.0.1 running ``script``; its address."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]

    async def serve_one() -> None:
        async with listener:
            stream = await listener.accept()
        async with stream:
            await script(stream, msgpack.Unpacker(raw=False))

    nursery.start_soon(serve_one)
    return f"127.0.0.1:{port}"


async def next_request(stream: trio.SocketStream, unpacker: msgpack.Unpacker) -> list[object]:
    while True:
        for message in unpacker:
            return message  # type: ignore[no-any-return]
        unpacker.feed(await stream.receive_some(65536))


def response(msgid: object, error: object, result: object) -> bytes:
    return msgpack.packb([1, msgid, error, result], use_bin_type=True)  # type: ignore[no-any-return]


async def test_garbage_from_the_server_fails_the_connection(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, unpacker: msgpack.Unpacker) -> None:
        await next_request(stream, unpacker)  # hello
        await stream.send_all(b"\xc1\xc1\xc1")  # never valid MessagePack
        await trio.sleep_forever()

    address = await scripted_peer(nursery, script)
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed, match="protocol error"):
        async with connect(address, connect_timeout=TIMEOUT):
            pass  # pragma: no cover


async def test_stray_answers_and_odd_notifications_are_ignored(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, unpacker: msgpack.Unpacker) -> None:
        hello = await next_request(stream, unpacker)
        await stream.send_all(response(hello[1], None, {"protocol": 1}))
        request = await next_request(stream, unpacker)
        assert request[2:] == ["len", ["default"]]
        await stream.send_all(
            response(request[1] + 1, None, 99)  # a msgid nobody waits for
            + msgpack.packb([2, "down", ["x"]])  # malformed params
            + msgpack.packb([2, "down", ["default", [1], "closed"]])  # unhashable ref
            + msgpack.packb([2, "other", []])  # an unknown notification
            + response(request[1], None, 7)
        )
        request = await next_request(stream, unpacker)
        await stream.send_all(msgpack.packb([3, request[1]]))  # no such message type
        await trio.sleep_forever()

    address = await scripted_peer(nursery, script)
    with trio.fail_after(TIMEOUT):
        async with connect(address, connect_timeout=TIMEOUT) as conn:
            assert await conn.broker("default").len() == 7
            with pytest.raises(ConnectionFailed, match="unexpected message"):
                await conn.broker("default").len()
