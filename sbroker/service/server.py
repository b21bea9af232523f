"""The broker service: named hosts, listeners, connections, reload and shutdown.

A :class:`Service` holds the named :class:`~sbroker.Broker` and
:class:`~sbroker.regulator.Regulator` objects of a configuration (it is an
adapter: every request is a call on them, made by a
:class:`~sbroker.service.session.Session`) and serves them on listeners.

Each :class:`Connection` runs one reader task and one writer task. The
reader feeds the bytes it receives to the connection's sans-I/O
:class:`~sbroker.service.protocol.ServerProtocol` and hands every event to
the session, in order; nothing it does blocks on another connection. The
writer drains a bounded outbox: responses are queued without blocking
(possibly from inside a host's call, when a match answers a waiting request),
and a peer that lets more than ``max_output_bytes`` pile up, or whose socket
takes no bytes for ``write_deadline``, is disconnected (S11). However a
connection ends, its session is closed in the connection's own task: queued
requests withdrawn, permits released, monitors told (S7).

Shutdown (S13): stop accepting, close every host (each queued request is
answered ``Drop``), let every connection write what it has for at most the
write deadline, then close them.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import signal
from collections import deque
from collections.abc import Sequence
from typing import Any

import trio

from sbroker.service.access import Tokens
from sbroker.service.config import ConfigError, ServerSettings, ServiceConfig, load_config
from sbroker.service.config import default_config as built_in_config
from sbroker.service.hosts import Hosts
from sbroker.service.protocol import Limits, ServerProtocol
from sbroker.service.session import Context, Session

__all__ = ["Connection", "Service"]

logger = logging.getLogger("sbroker.service")

RECEIVE_BYTES = 64 * 1024
WRITE_CHUNK_BYTES = 64 * 1024
_DEFAULT_SHUTDOWN_SECONDS = 10.0
#: How many of its latest matches a connection can still ``monitor`` (S9).
MONITORED_MATCHES = 1024


def _peer(stream: trio.abc.Stream) -> str:
    """Where a stream comes from, for the logs."""
    transport = getattr(stream, "transport_stream", stream)
    sock = getattr(transport, "socket", None)
    try:
        name = sock.getpeername() if sock is not None else None
    except OSError:
        name = None
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return "unix socket" if name is not None else "unknown peer"


class Connection:
    """One connection: a reader task, a writer task, a bounded outbox (see the module)."""

    def __init__(self, stream: trio.abc.Stream, context: Context, settings: ServerSettings):
        self._stream = stream
        self._settings = settings
        self.protocol = ServerProtocol(Limits(settings.max_message_bytes, settings.max_in_flight))
        self.session = Session(context, self.protocol, self.send)
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._writing = False  # the writer task is inside _write
        self._gathering = False  # the reader is handling a batch: hold responses
        self._outbox: deque[bytes] = deque()
        self._queued = 0  # bytes queued and not yet written
        self._writer_wakeup = trio.lowlevel.ParkingLot()
        self._scope = trio.CancelScope()
        self._read_scope = trio.CancelScope()
        self._accepting = True  # output is taken
        self._draining = False  # the writer exits once the outbox is empty
        self.reason = "open"

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer; never blocks. Over ``max_output_bytes`` the connection
        is closed (S11). Safe to call from inside a host's call.

        While nothing is queued or being written, a plain socket is written at once with
        one non-blocking ``write`` (no task switch). While the reader handles a batch of
        requests, their responses are gathered and written together after it.
        """
        if not self._accepting:
            return
        if not (self._outbox or self._writing or self._gathering):
            data = self._write_now(data)
            if not data:
                return
        self._outbox.append(data)
        self._queued += len(data)
        if self._queued > self._settings.max_output_bytes:
            self.abort(f"over max_output_bytes ({self._settings.max_output_bytes}) unwritten")
        elif not self._gathering:
            self._writer_wakeup.unpark()

    def _write_now(self, data: bytes) -> bytes:
        """Write what the socket takes without blocking; return the rest."""
        if self._fd is None:
            return data
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            return data
        except OSError as exc:
            self.abort(f"write failed: {exc.strerror or exc}")
            return b""
        return data[sent:]

    def _flush_gathered(self) -> None:
        """After a batch: write the gathered responses at once, or leave them to the writer."""
        self._gathering = False
        if self._outbox and not self._writing and self._accepting:
            data = b"".join(self._outbox)
            self._outbox.clear()
            rest = self._write_now(data)
            self._queued = len(rest)
            if rest:
                self._outbox.append(rest)
        if self._outbox:
            self._writer_wakeup.unpark()

    def abort(self, reason: str) -> None:
        """Close at once, dropping unwritten output (synchronous; the session is closed
        by the connection's own task)."""
        if self._accepting:
            self.reason = reason
        self._accepting = False
        self._outbox.clear()
        self._scope.cancel()

    def finish(self, reason: str) -> None:
        """Stop reading; write what is queued (within the write deadline), then close."""
        if self.reason == "open":
            self.reason = reason
        self._read_scope.cancel()

    async def run(self) -> None:
        """Serve the connection until it ends; then close the session (S7) and the stream."""
        logger.info("connection %d opened from %s", self.session.id, _peer(self._stream))
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    with self._read_scope:
                        await self._read_loop()
                    self.session.close()
                    self._draining = True
                    self._writer_wakeup.unpark()
        except Exception:  # a bug: it ends this connection, never the server
            logger.exception("connection %d: internal error", self.session.id)
            self.reason = "internal error"
        finally:
            self._accepting = False
            self.session.close()
            await trio.aclose_forcefully(self._stream)
            logger.info("connection %d closed: %s", self.session.id, self.reason)

    async def _read_loop(self) -> None:
        protocol, session, fd = self.protocol, self.session, self._fd
        while True:
            try:
                if fd is None:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                else:
                    # A plain socket is read directly: wait until readable, then one read.
                    # On a request-response stream a first try finds nothing most of the
                    # time, so waiting first saves a system call; the wait is the checkpoint.
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = os.read(fd, RECEIVE_BYTES)
                    except BlockingIOError:
                        continue
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.reason = f"read failed: {type(exc).__name__}"
                return
            if not data:
                self.reason = "end of file from the peer"
                return
            protocol.receive_data(data)
            self._gathering = True
            try:
                while (event := protocol.next_event()) is not None:
                    if not session.handle(event):
                        self.reason = "protocol error or failed hellos"
                        return
            finally:
                self._flush_gathered()

    async def _write_loop(self) -> None:
        outbox = self._outbox
        while True:
            while not outbox:
                if self._draining:
                    return
                await self._writer_wakeup.park()
            size = 0
            chunks = []
            while outbox and size < WRITE_CHUNK_BYTES:
                chunk = outbox.popleft()
                chunks.append(chunk)
                size += len(chunk)
            self._writing = True
            try:
                written = await self._write(b"".join(chunks))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.abort(f"write failed: {type(exc).__name__}")
                return
            finally:
                self._writing = False
            if not written:
                deadline = self._settings.write_deadline
                self.abort(f"a write made no progress for write_deadline ({deadline} s)")
                return
            self._queued -= size

    async def _write(self, data: bytes) -> bool:
        """Write ``data``; ``False`` when the peer took nothing for ``write_deadline`` (S11).

        A plain socket is written directly, so the deadline runs afresh after each
        bit of progress; another stream (TLS) gets the deadline per chunk.
        """
        deadline = self._settings.write_deadline
        seconds = math.inf if deadline is None else deadline
        if self._fd is None:
            with trio.move_on_after(seconds):
                await self._stream.send_all(data)
                return True
            return False
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
                continue
            except BlockingIOError:
                pass
            with trio.move_on_after(seconds):
                await trio.lowlevel.wait_writable(self._fd)
                continue
            return False
        await trio.lowlevel.checkpoint()
        return True


class Service:
    """Named brokers and regulators served over MessagePack-RPC (protocol.md).

    Args:
        config: the configuration; its hosts are built here, and a table that
            fails raises :class:`~sbroker.service.config.ConfigError` naming it.
        tokens: the access tokens (default: ``[server] token``/``admin_token``).

    Call :meth:`serve` with listeners; :meth:`stop` (or SIGTERM/SIGINT, with
    ``handle_signals``) shuts it down as S13 says; :meth:`reload` re-reads the
    configuration file.
    """

    def __init__(self, config: ServiceConfig, *, tokens: Tokens | None = None) -> None:
        self.config = config
        self.settings = config.server
        self.hosts = Hosts()
        plan = self.hosts.prepare(config)
        if plan.failed:
            raise ConfigError("\n".join(plan.failed.values()))
        self._initial_plan: Any = plan
        if tokens is None:
            tokens = Tokens(config.server.token, config.server.admin_token)
        self.context = Context(
            self.hosts,
            self.reload,
            tokens=tokens,
            node=secrets.token_hex(8),
            max_matches=min(config.server.max_in_flight, MONITORED_MATCHES),
        )
        self._connections: set[Connection] = set()
        self._stopping = trio.Event()
        self._host_nursery: trio.Nursery | None = None

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def stop(self) -> None:
        """Shut down (S13): stop accepting, answer every queued request ``Drop``, write
        what can be written, return from :meth:`serve`."""
        self._stopping.set()

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        handle_signals: bool = False,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the hosts and serve ``listeners`` until :meth:`stop`; the listeners are
        closed on return. ``handle_signals``: SIGTERM/SIGINT stop, SIGHUP reloads."""
        try:
            async with trio.open_nursery() as host_nursery:
                self._host_nursery = host_nursery
                self.hosts.commit(self._initial_plan, self._start_host)
                self._initial_plan = None
                async with trio.open_nursery() as connection_nursery:
                    async with trio.open_nursery() as accepting:
                        if handle_signals:
                            accepting.start_soon(self._signals)
                        for listener in listeners:
                            accepting.start_soon(self._accept, listener, connection_nursery)
                        task_status.started()
                        await self._stopping.wait()
                        accepting.cancel_scope.cancel()
                    self._shut_down(connection_nursery)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def _start_host(self, host: Any) -> None:
        assert self._host_nursery is not None
        self._host_nursery.start_soon(host.run)

    def _shut_down(self, connection_nursery: trio.Nursery) -> None:
        logger.info("shutting down: %d connections", len(self._connections))
        self.hosts.close_all()
        for connection in list(self._connections):
            connection.finish("the server is stopping")
        grace = self.settings.write_deadline or _DEFAULT_SHUTDOWN_SECONDS
        connection_nursery.cancel_scope.deadline = trio.current_time() + grace

    async def _accept(self, listener: trio.abc.Listener[Any], nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:  # e.g. out of file descriptors: wait, then go on
                logger.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        if len(self._connections) >= self.settings.max_connections:
            logger.warning(
                "connection refused from %s: max_connections (%d) reached",
                _peer(stream),
                self.settings.max_connections,
            )
            await trio.aclose_forcefully(stream)
            return
        connection = Connection(stream, self.context, self.settings)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    # -- reload ----------------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Re-read the configuration file and apply it (section 7); the per-name report.

        Raises :class:`ConfigError` (and changes nothing) when the file is
        unreadable or its ``[server]`` table invalid. ``[server]`` changes
        take effect at the next start; the report's ``"server"`` says so.
        """
        path = self.config.path
        config = built_in_config() if path is None else load_config(path)
        report = self.hosts.commit(self.hosts.prepare(config), self._start_host)
        unchanged = config.server == self.config.server
        report["server"] = "unchanged" if unchanged else "changed: takes effect at the next start"
        logger.info(
            "reload of %s: changed %s, added %s, removed %s, failed %s, server %s",
            path or "the built-in config",
            report["changed"],
            report["added"],
            report["removed"],
            sorted(report["failed"]),
            report["server"],
        )
        return report

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum != signal.SIGHUP:
                    logger.info("signal %s: stopping", signal.Signals(signum).name)
                    self.stop()
                    return
                try:
                    self.reload()
                except ConfigError as exc:
                    logger.error("reload on SIGHUP failed: %s", exc)
