"""Remote endpoints of a balancer: URLs, one shared connection per server (balancing.md L1, D1).

An endpoint ``"tcp://HOST:PORT/NAME"`` or ``"unix:///PATH#NAME"`` names a
broker or regulator ``NAME`` of the server at ``tcp://HOST:PORT`` or
``unix:///PATH``. Every endpoint of one server shares one connection, opened
by the first request that needs it (within ``connect_timeout``) and closed
once the server has no endpoint left in the set and none of its requests is
in flight.

The balancer reaches servers through a :class:`Connector`, by default
:class:`ClientConnector` over :mod:`sbroker.client`; tests pass their own.
A connection's task runs in the balancer's nursery and holds the client's
``async with connect(...)`` open until the server is released.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import trio

__all__ = [
    "ClientConnector",
    "Connector",
    "NotWritten",
    "RemoteEndpoint",
    "Server",
    "ServerPool",
    "parse_endpoint",
]


class NotWritten(Exception):
    """A request could not be sent at all (no connection): safe to retry elsewhere (L4)."""


class Connector(Protocol):
    """Opens connections to servers; ``connect`` has the shape of ``sbroker.client.connect``.

    ``errors`` are the exception types, besides ``OSError`` and trio's broken
    or closed resource errors, that a call on an open connection raises for an
    endpoint failure (the client's protocol errors).
    """

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Exception types meaning an endpoint failure on an open connection."""
        ...

    async def ensure_connected(self, connection: Any) -> None:
        """Return once ``connection`` can take a call; raise ``OSError`` if it cannot.

        Called before every request, so that a failure here means the request
        was never written (L4).
        """
        ...

    def connect(self, address: str, *, connect_timeout: float) -> AbstractAsyncContextManager[Any]:
        """An async context manager yielding a connection with ``broker(name)`` and
        ``regulator(name)``, whose handles have the broker calls as coroutines and
        ``async estimate() -> (ask, ask_r)``. Entering it raises ``OSError`` if no
        connection is made within ``connect_timeout`` seconds."""
        ...


class ClientConnector:
    """The default :class:`Connector`: :func:`sbroker.client.connect`."""

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The client's ``RemoteError``."""
        from sbroker import client

        return (client.RemoteError,)

    async def ensure_connected(self, connection: Any) -> None:
        """Wait (up to the connect timeout) for the client's live session, if there is none."""
        if not connection.connected:
            await connection.current_session()

    def connect(self, address: str, *, connect_timeout: float) -> AbstractAsyncContextManager[Any]:
        """Open a connection with the service client."""
        from sbroker import client

        result: AbstractAsyncContextManager[Any] = client.connect(
            address, connect_timeout=connect_timeout
        )
        return result


def parse_endpoint(url: str) -> tuple[str, str]:
    """``(server address, name)`` of an endpoint URL; ``ValueError`` naming it if malformed."""
    if url.startswith("tcp://"):
        address, slash, name = url[len("tcp://") :].partition("/")
        if slash and name and ":" in address:
            return "tcp://" + address, name
    elif url.startswith("unix://"):
        address, hash_, name = url.partition("#")
        if hash_ and name and len(address) > len("unix://"):
            return address, name
    raise ValueError(
        f"endpoint {url!r} must be 'tcp://HOST:PORT/NAME' or 'unix:///PATH#NAME'"
    )


class Server:
    """One server's shared connection, its endpoints in the set and its requests in flight."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.endpoints = 0  # endpoints of this server in the balancer's set
        self.in_flight = 0
        self.connection: Any = None
        self._ready: trio.Event | None = None  # set once a connect attempt has finished
        self._release: trio.Event | None = None  # set to close the connection
        self.error: BaseException | None = None

    @property
    def idle(self) -> bool:
        """Nothing needs this server any more: its connection may close."""
        return self.endpoints == 0 and self.in_flight == 0


class ServerPool:
    """The servers of one balancer, keyed by address; connections live in ``nursery``."""

    def __init__(self, connector: Connector, connect_timeout: float) -> None:
        self.connector = connector
        self._connect_timeout = connect_timeout
        self.servers: dict[str, Server] = {}
        self.nursery: trio.Nursery | None = None
        self.open_connections = 0

    def acquire(self, address: str) -> Server:
        """An endpoint of ``address`` joined the set."""
        server = self.servers.get(address)
        if server is None:
            server = self.servers[address] = Server(address)
        server.endpoints += 1
        return server

    def release(self, server: Server) -> None:
        """An endpoint left the set, or a request finished: close the connection if idle."""
        if server.idle:
            if self.servers.get(server.address) is server:
                del self.servers[server.address]
            self.disconnect(server)

    def disconnect(self, server: Server) -> None:
        """Close ``server``'s connection (a later request reconnects)."""
        server.connection = None
        if server._release is not None:
            server._release.set()
        server._ready = server._release = None

    async def connection(self, server: Server) -> Any:
        """The server's connection, opening it if needed; :class:`NotWritten` if it cannot."""
        if server.connection is not None:
            return server.connection
        if self.nursery is None:
            raise NotWritten(f"{server.address}: the balancer is not running")
        if server._ready is None:
            server._ready = trio.Event()
            server._release = trio.Event()
            self.nursery.start_soon(self._hold, server, server._ready, server._release)
        ready = server._ready
        await ready.wait()
        if server.connection is None:
            raise NotWritten(f"{server.address}: cannot connect: {server.error!r}")
        return server.connection

    async def _hold(self, server: Server, ready: trio.Event, release: trio.Event) -> None:
        """Open the connection, publish it, keep it until released (or the balancer stops).

        The connector enforces the connect timeout; any ``OSError`` (refused,
        reset, timed out) ends the attempt and is kept as the server's error.
        """
        try:
            async with self.connector.connect(
                server.address, connect_timeout=self._connect_timeout
            ) as connection:
                self.open_connections += 1
                try:
                    if not release.is_set():
                        server.connection = connection
                        server.error = None
                    ready.set()
                    await release.wait()
                finally:
                    self.open_connections -= 1
                    if server.connection is connection:
                        server.connection = None
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            server.error = exc
        finally:
            if server._ready is ready and server.connection is None:
                server._ready = server._release = None
            ready.set()


class RemoteEndpoint:
    """The target of a remote entry: its server and the broker's name there."""

    __slots__ = ("name", "server", "url")

    def __init__(self, url: str, server: Server, name: str) -> None:
        self.url = url
        self.server = server
        self.name = name

    async def call(self, pool: ServerPool, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the remote broker (``continue_``/``done``: regulator).

        Raises :class:`NotWritten` if there is no connection to send it on.
        """
        connection = await pool.connection(self.server)
        try:
            await pool.connector.ensure_connected(connection)
        except OSError as exc:
            pool.disconnect(self.server)
            raise NotWritten(f"{self.url}: not connected: {exc}") from exc
        if method in ("continue_", "done"):
            handle = connection.regulator(self.name)
        else:
            handle = connection.broker(self.name)
        function: Callable[..., Awaitable[Any]] = getattr(handle, method)
        return await function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<RemoteEndpoint {self.url}>"
