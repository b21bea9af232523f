"""A client connection: connect, reconnect with backoff, and calls on the current session.

The first connection is made in :func:`connect` (a failure raises
:class:`ConnectionFailed` at once). When it is lost, the calls in flight fail
with :class:`ConnectionFailed` (a call already written is never retried) and a
background task reconnects: at once, then after 1 s, 1.6 s, ... (+-20 %, at
most 120 s; :class:`Backoff`). A new call made while disconnected waits up to
``connect_timeout`` for the connection to come back, then raises
:class:`ConnectionFailed`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from sbroker.client._backoff import Backoff
from sbroker.client._errors import ConnectionFailed, RemoteError, error_from_wire
from sbroker.client._session import Monitor, Reply, Session
from sbroker.service.listen import Address, open_stream, parse_address

if TYPE_CHECKING:
    from sbroker.client._remote import RemoteBroker, RemoteRegulator

PROTOCOL_VERSION = 1
#: The largest message the client accepts from the server (bytes).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Connection:
    """A connection to a broker service; make one with :func:`connect`.

    ``broker(name)`` and ``regulator(name)`` return the remote objects whose
    coroutines mirror :class:`sbroker.Broker` and
    :class:`sbroker.regulator.Regulator`.
    """

    def __init__(
        self,
        address: Address,
        *,
        token: str | None,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        backoff: Backoff,
    ) -> None:
        self.address = address
        self._token = token
        self._ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self._backoff = backoff
        self._session: Session | None = None
        self._connected = trio.Event()
        self._last_error: BaseException | None = None
        self._closed = False
        self._nursery: trio.Nursery | None = None
        #: What the server said in ``hello`` on the current connection.
        self.server_info: dict[str, Any] = {}

    # -- connecting ----------------------------------------------------------------

    async def _open_session(self) -> Session:
        """Connect and say ``hello`` (with the token, if any), within the connect timeout."""
        session = None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await open_stream(self.address, ssl_context=self._ssl_context)
                session = Session(stream, str(self.address), MAX_MESSAGE_BYTES, self._lost)
                assert self._nursery is not None
                self._nursery.start_soon(session.run)
                self.server_info = await self._hello(session)
        except trio.TooSlowError:
            if session is not None:
                session.close()
            raise ConnectionFailed(
                f"{self.address}: no connection within {self.connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            if session is not None:
                session.close()
            if isinstance(exc, ConnectionFailed):
                raise
            raise ConnectionFailed(f"{self.address}: {exc}") from None
        except BaseException:
            if session is not None:
                session.close()
            raise
        return session

    async def _hello(self, session: Session) -> dict[str, Any]:
        opts = {} if self._token is None else {"token": self._token}
        # Through a Reply, not a parked call: the connect timeout must not wait for an answer.
        error, result = await session.start("hello", [PROTOCOL_VERSION, opts]).wait()
        if error is not None:
            raise error_from_wire(error)
        return result if isinstance(result, dict) else {}

    def _lost(self, session: Session) -> None:
        """A session was lost: new calls wait for the reconnect started here."""
        if self._session is session:
            self._session = None
            self._connected = trio.Event()
            if not self._closed:
                assert self._nursery is not None
                self._nursery.start_soon(self._reconnect)

    async def _reconnect(self) -> None:
        """Reconnect in the background: at once, then with backoff, until it works."""
        while not self._closed:
            try:
                session = await self._open_session()
            except (ConnectionFailed, RemoteError) as exc:
                self._last_error = exc
                await trio.sleep(self._backoff.next_delay())
                continue
            self._backoff.reset()
            self._install(session)
            return

    def _install(self, session: Session) -> None:
        self._session = session
        self._last_error = None
        self._connected.set()

    @property
    def connected(self) -> bool:
        """Whether a live session is there now (a call would be written at once)."""
        session = self._session
        return session is not None and session.alive

    async def current_session(self) -> Session:
        """The live session, waiting up to the connect timeout for a reconnect.

        Raises :class:`ConnectionFailed` if there is none by then.
        """
        with trio.move_on_after(self.connect_timeout):
            while True:
                session = self._session
                if session is not None and session.alive:
                    return session
                if self._closed:
                    raise ConnectionFailed(f"{self.address}: the connection is closed")
                await self._connected.wait()
        raise ConnectionFailed(f"{self.address}: not connected (last error: {self._last_error})")

    # -- calls -------------------------------------------------------------------------

    async def call(self, method: str, *params: Any) -> Any:
        """Send one request and return its result; raise its error.

        Errors: :class:`RemoteError` (``closed``: :class:`sbroker.BrokerClosed`),
        :class:`ConnectionFailed`.
        """
        session = self._session
        if session is None or not session.alive:
            session = await self.current_session()
        error, result = await session.call(method, list(params))
        if error is not None:
            raise error_from_wire(error)
        return result

    async def start(self, method: str, *params: Any) -> Reply:
        """Send a request without waiting for it; its answer is kept in the :class:`Reply`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        session = await self.current_session()
        return session.start(method, list(params))

    async def monitor(self, name: str, ref: Hashable) -> Monitor:
        """Send ``monitor`` (S9) and return the :class:`Monitor` its ``down`` reaches."""
        session = await self.current_session()
        monitor = session.watch(name, ref)
        try:
            error, _ = await session.call("monitor", [name, ref])
        except BaseException:
            session.unwatch(monitor)
            raise
        if error is not None:
            session.unwatch(monitor)
            raise error_from_wire(error)
        return monitor

    def broker(self, name: str) -> RemoteBroker:
        """The remote broker ``name`` (no round trip: errors come with the first call)."""
        from sbroker.client._remote import RemoteBroker

        return RemoteBroker(self, name)

    def regulator(self, name: str) -> RemoteRegulator:
        """The remote regulator ``name`` (no round trip: errors come with the first call)."""
        from sbroker.client._remote import RemoteRegulator

        return RemoteRegulator(self, name)

    async def hello(self) -> dict[str, Any]:
        """Send ``hello`` again; return the server's answer (protocol, server, names)."""
        session = await self.current_session()
        self.server_info = await self._hello(session)
        return self.server_info

    async def names(self) -> dict[str, list[str]]:
        """``{"brokers": [...], "regulators": [...]}``: what the server holds."""
        return await self.call("names")  # type: ignore[no-any-return]

    async def reload(self) -> dict[str, Any]:
        """Make the server re-read its configuration file; return its per-name report."""
        return await self.call("reload")  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the connection: calls in flight raise :class:`ConnectionFailed`."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            session.close()
        self._connected.set()  # wakes calls waiting for a reconnect: they fail now
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def __repr__(self) -> str:
        state = "connected" if self._session is not None else "disconnected"
        return f"<Connection {self.address} {state}>"


@asynccontextmanager
async def connect(
    address: str | Address,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 5.0,
    backoff: Backoff | None = None,
) -> AsyncIterator[Connection]:
    """Connect to a broker service at ``address`` (``"HOST:PORT"`` or ``"unix:/path"``).

    ``token`` is presented in ``hello`` (protocol.md A1); ``ssl_context``
    makes a TCP connection TLS. Raises :class:`ConnectionFailed` if no
    connection is made within ``connect_timeout`` seconds. The connection is
    closed when the block exits.
    """
    if isinstance(address, str):
        address = parse_address(address)
    conn = Connection(
        address,
        token=token,
        ssl_context=ssl_context,
        connect_timeout=connect_timeout,
        backoff=Backoff() if backoff is None else backoff,
    )
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            conn._nursery = nursery
            try:
                conn._install(await conn._open_session())
            except (ConnectionFailed, RemoteError) as exc:
                failure = exc
                nursery.cancel_scope.cancel()
            else:
                try:
                    yield conn
                finally:
                    await conn.aclose()
    except BaseExceptionGroup as group:
        # The background tasks never raise: a lone exception is the block's own; unwrapped,
        # it reaches the caller as if no nursery were here.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if failure is not None:
        raise failure
