"""Connection failures, reconnecting with backoff for new calls only (issue 10 item 4)."""

from __future__ import annotations

import socket

import client_harness
import pytest
import trio
from client_harness import TIMEOUT, Proxy, Server, served

from sbroker.client import Backoff, ConnectionFailed, connect

server = client_harness.server
unix_server = client_harness.unix_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connecting_to_nothing_fails_fast() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed) as caught:
        async with connect(f"127.0.0.1:{free_port()}"):
            pass  # pragma: no cover
    assert isinstance(caught.value, OSError)


async def test_a_written_call_fails_and_is_not_resent_after_reconnecting(
    server: Server, nursery: trio.Nursery
) -> None:
    proxy = Proxy(server.address)
    await nursery.start(proxy.run)
    backoff = Backoff(initial=0.05, maximum=0.2)
    async with connect(proxy.address, backoff=backoff, connect_timeout=TIMEOUT) as conn:
        broker = conn.broker("default")
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as callers:
                failures: list[BaseException] = []

                async def ask() -> None:
                    try:
                        await broker.ask("in flight")
                    except ConnectionFailed as exc:
                        failures.append(exc)

                callers.start_soon(ask)
                while await broker.len() != 1:
                    await trio.sleep(0.005)
                await proxy.cut()
            assert len(failures) == 1  # the written call raised: it is never retried
            assert await broker.len() == 0  # a new call reconnected; nothing was re-sent (S7)


async def test_new_calls_reconnect_after_a_server_restart(server: Server) -> None:
    backoff = Backoff(initial=0.05, maximum=0.2)
    async with served(server, backoff=backoff, connect_timeout=TIMEOUT) as conn:
        broker = conn.broker("default")
        assert await broker.len() == 0
        await server.restart()
        with trio.fail_after(TIMEOUT):
            assert await broker.len() == 0
            assert conn.server_info["protocol"] == 1


async def test_a_new_call_while_down_fails_after_the_connect_timeout(server: Server) -> None:
    async with served(server, backoff=Backoff(initial=5.0), connect_timeout=0.2) as conn:
        await server.stop()
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectionFailed, match="not connected"):
            await conn.broker("default").len()


async def test_closing_the_connection_fails_calls_in_flight(server: Server) -> None:
    with trio.fail_after(TIMEOUT):
        async with served(server) as conn:
            broker = conn.broker("default")
            async with trio.open_nursery() as nursery:

                async def ask() -> None:
                    with pytest.raises(ConnectionFailed):
                        await broker.ask()

                nursery.start_soon(ask)
                while await broker.len() != 1:
                    await trio.sleep(0.005)
                await conn.aclose()
            with pytest.raises(ConnectionFailed, match="closed"):
                await broker.len()


async def test_unix_socket(unix_server: Server) -> None:
    async with served(unix_server) as conn:
        assert str(conn.address).startswith("unix:")
        assert await conn.broker("default").len() == 0
