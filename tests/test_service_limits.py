"""Limits, slow readers and bad bytes (protocol.md S10, S11, S12)."""

from __future__ import annotations

import logging

import msgpack
import pytest
import trio
from msgpack_rpc_client import RpcClient
from service_harness import TIMEOUT, Served, serving, wait_until

CONFIG = """
[brokers.db]
ask = { policy = "timeout", timeout = inf }
ask_r = { policy = "timeout", timeout = inf }
"""

BIG = b"x" * 100_000


def db_len(served: Served, method: str = "len") -> int:
    return getattr(served.service.hosts.get("db"), method)()  # type: ignore[no-any-return]


async def flood_slow_reader(served: Served, fast: RpcClient, count: int) -> None:
    """A peer queues ``count`` ask_rs and never reads; ``fast`` answers them with big values."""
    slow = await served.connect()
    for _ in range(count):
        await slow.start("ask_r", "db", "slow")
    await wait_until(lambda: db_len(served, "len_r") == count)
    answered = 0
    while answered < count:  # the slow reader's queued ask_rs disappear when it is closed
        if (await fast.call("nb_ask", "db", BIG))[0] == "drop":
            break
        answered += 1
    await wait_until(lambda: served.service.connections == 1)
    assert db_len(served, "len_r") == 0  # S7 applied: nothing of it stays queued
    await slow.aclose()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"max_output_bytes": 200_000}, "over max_output_bytes"),
        # the kernel buffers a few MB at most for a peer that never reads: the rest waits
        ({"write_deadline": 0.3, "max_output_bytes": 64 * 2**20}, "no progress for write_deadline"),
    ],
)
async def test_slow_reader_is_disconnected(
    settings: dict[str, object], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    # S11: it never blocks the server or other connections, and leaks nothing
    caplog.set_level(logging.INFO, logger="sbroker.service")
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, **settings) as served, await served.connect() as fast:
            await flood_slow_reader(served, fast, 100)
            assert any(reason in record.getMessage() for record in caplog.records)
            waiting = await fast.start("ask", "db", "still served")
            assert (await fast.call("nb_ask_r", "db"))[2] == "still served"
            assert (await fast.result(waiting))[0] == "go"
            [connection] = served.service._connections
            assert connection.session.waiting == 0


async def test_too_large_is_answered_then_closed() -> None:
    # S10
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, max_message_bytes=1000) as served:
            async with await served.connect() as other, await served.connect() as client:
                waiting = await other.start("ask", "db", "other's")
                await client.start("ask", "db", b"y" * 2000, msgid=41)
                error, _ = await client.response(41)
                assert error[0] == "too_large"
                await client.closed()
                assert await other.call("len", "db") == 1  # S12: untouched
                await other.call("nb_ask_r", "db")
                assert (await other.result(waiting))[0] == "go"


async def test_overloaded_and_max_connections() -> None:
    # S10
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, max_in_flight=3, max_connections=2) as served:
            async with await served.connect() as client, await served.connect() as second:
                asks = [await client.start("ask", "db") for _ in range(3)]
                error, _ = await client.response(await client.start("len", "db"))
                assert error[0] == "overloaded"
                assert await second.call("len", "db") == 3
                await client.notify("cancel_request", asks[0])
                assert (await client.response(asks[0]))[0][0] == "cancelled"
                assert await client.call("len", "db") == 2  # room again
                third = await served.connect()
                await third.closed()  # refused at once
                await third.aclose()
                assert await second.call("len", "db") == 2


@pytest.mark.parametrize(
    ("data", "answered"),
    [
        (b"\xc1\x00\x00", False),  # not MessagePack
        (msgpack.packb({"not": "an array"}), False),
        (msgpack.packb([2, "cancel_request", ["x"]]), False),  # bad notification
        (msgpack.packb([2, "no_such_notification", []]), False),
        (b"\x94\x00\x05\xa3len\x91\xc1", True),  # bad bytes after a readable msgid
    ],
)
async def test_bad_bytes_close_the_connection(data: bytes, answered: bool) -> None:
    # S12: an error response where a msgid can be read, else the connection is closed
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as other:
            waiting = await other.start("ask", "db")
            async with await served.connect() as client:
                await client.send_raw(data)
                await client.closed()
                assert (5 in client.responses) == answered
                if answered:
                    assert client.responses[5][0][0] == "bad_request"
            assert await other.call("len", "db") == 1
            await other.call("nb_ask_r", "db")
            assert (await other.result(waiting))[0] == "go"


async def test_answerable_bad_messages_keep_the_connection() -> None:
    # S12: wrong types with a readable msgid: bad_request, and the stream goes on
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            await client.send([0, 1, 7, []])
            await client.send([0, 2, "len", {"db": 1}])
            await client.send([5, 3])
            for msgid in (1, 2, 3):
                assert (await client.response(msgid))[0][0] == "bad_request"
            assert await client.call("len", "db") == 0
