"""Fakes for the balancer tests: a connector to in-process "servers" of real brokers.

A :class:`FakeServer` holds brokers by name. :class:`FakeConnector` opens
connections to it that forward every call to the broker (as the service
client would over a socket). ``server.kill()`` breaks every open connection:
calls in flight raise ``ConnectionResetError``, new connections are refused
until ``server.restart()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from sbroker import Broker


class FakeServer:
    def __init__(self, brokers: dict[str, Broker]) -> None:
        self.brokers = brokers
        self.alive = True
        self.connections: list[FakeConnection] = []
        self.opened = 0
        self.calls: list[str] = []

    def kill(self) -> None:
        self.alive = False
        for connection in list(self.connections):
            connection.break_()

    def restart(self) -> None:
        self.alive = True


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.broken = False
        self.scopes: set[trio.CancelScope] = set()

    def break_(self) -> None:
        self.broken = True
        for scope in self.scopes:
            scope.cancel()

    def broker(self, name: str) -> FakeHandle:
        return FakeHandle(self, name)


class FakeHandle:
    """A remote broker: the broker calls as coroutines, plus estimate()."""

    def __init__(self, connection: FakeConnection, name: str) -> None:
        self._connection = connection
        self._name = name

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if connection.broken:
            raise ConnectionResetError("connection reset")
        broker = connection.server.brokers[self._name]
        connection.server.calls.append(method)
        with trio.CancelScope() as scope:
            connection.scopes.add(scope)
            try:
                result = getattr(broker, method)(*args, **kwargs)
                if method in ("ask", "ask_r"):
                    result = await result
                else:
                    await trio.lowlevel.checkpoint()
                return result
            finally:
                connection.scopes.discard(scope)
        raise ConnectionResetError("connection reset while waiting")

    async def ask(self, value: Any = None) -> Any:
        return await self._call("ask", value)

    async def ask_r(self, value: Any = None) -> Any:
        return await self._call("ask_r", value)

    async def nb_ask(self, value: Any = None) -> Any:
        return await self._call("nb_ask", value)

    async def cancel(self, tag: Any) -> Any:
        return await self._call("cancel", tag)

    async def estimate(self) -> tuple[int | None, int | None]:
        broker = self._connection.server.brokers[self._name]
        if self._connection.broken:
            raise ConnectionResetError("connection reset")
        await trio.lowlevel.checkpoint()
        return broker.estimate("ask"), broker.estimate("ask_r")


class FakeConnector:
    errors = ()

    def __init__(self, servers: dict[str, FakeServer]) -> None:
        self.servers = servers
        self.open = 0

    @asynccontextmanager
    async def _connect(self, address: str) -> AsyncIterator[FakeConnection]:
        await trio.sleep(0.001)
        server = self.servers.get(address)
        if server is None or not server.alive:
            raise ConnectionRefusedError(f"{address}: refused")
        connection = FakeConnection(server)
        server.connections.append(connection)
        server.opened += 1
        self.open += 1
        try:
            yield connection
        finally:
            self.open -= 1
            server.connections.remove(connection)

    def connect(self, address: str, *, connect_timeout: float) -> Any:
        return self._connect(address)

    async def ensure_connected(self, connection: FakeConnection) -> None:
        await trio.lowlevel.checkpoint()
