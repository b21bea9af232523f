"""A real server in the test's trio run, on 127.0.0.1 port 0 or a Unix socket, for client tests.

Test modules bind the fixtures with ``server = client_harness.server`` (a plain
assignment, so the fixture name can be a test's parameter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from sbroker.client import Connection, connect
from sbroker.service.config import load_config
from sbroker.service.listen import (
    Address,
    bound_address,
    open_listeners,
    open_stream,
    parse_address,
)
from sbroker.service.server import Service

TIMEOUT = 10

CONFIG = """
[brokers.default]
ask = { policy = "timeout", timeout = inf }
ask_r = { policy = "timeout", timeout = inf }

[regulators.pool]
queue = { policy = "timeout", timeout = inf }
valve = { valve = "open", max_size = 2 }

[regulators.tight]
queue = { policy = "drop", max_len = 0 }
valve = { valve = "open", max_size = 1 }
"""


class Server:
    """A :class:`Service` serving one address in a nursery; it can stop and start again on
    the same address (a restart: every connection to it is lost)."""

    def __init__(self, nursery: trio.Nursery, config_path: Path, listen: Address) -> None:
        self._nursery = nursery
        self.config_path = config_path
        self._listen = listen
        self.address = str(listen)
        self.service: Service | None = None
        self._stopped = trio.Event()

    async def start(self) -> None:
        """Listen (the port found the first time is kept) and serve."""
        listeners = await open_listeners([self._listen])
        self._listen = bound_address(listeners[0])
        self.address = str(self._listen)
        self.service = Service(load_config(str(self.config_path)))
        self._stopped = trio.Event()
        await self._nursery.start(self._serve, self.service, listeners)

    async def _serve(
        self, service: Service, listeners: Any, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            await service.serve(listeners, task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Shut the service down (S13) and wait until it has."""
        assert self.service is not None
        self.service.stop()
        with trio.fail_after(TIMEOUT):
            await self._stopped.wait()

    async def restart(self) -> None:
        """Stop, then serve the same address with a fresh service."""
        await self.stop()
        await self.start()


class Proxy:
    """A TCP relay to a server whose connections the test can cut (an abrupt loss)."""

    def __init__(self, target: str) -> None:
        self.target = parse_address(target)
        self.address = ""
        self._pairs: list[tuple[trio.abc.Stream, trio.abc.Stream]] = []

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay every connection until cancelled."""
        (listener,) = await open_listeners([parse_address("127.0.0.1:0")])
        self.address = str(bound_address(listener))
        task_status.started()
        await trio.serve_listeners(self._relay, [listener])

    async def _relay(self, client: trio.abc.Stream) -> None:
        upstream = await open_stream(self.target)
        self._pairs.append((client, upstream))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, upstream, nursery.cancel_scope)
            nursery.start_soon(self._pipe, upstream, client, nursery.cancel_scope)

    async def _pipe(
        self, source: trio.abc.Stream, sink: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            scope.cancel()
            await trio.aclose_forcefully(sink)

    async def cut(self) -> None:
        """Close every relayed connection at once, both ways."""
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for stream in pair:
                await trio.aclose_forcefully(stream)


async def _running(nursery: trio.Nursery, tmp_path: Path, listen: str) -> Server:
    config_path = tmp_path / "sbroker.toml"
    config_path.write_text(CONFIG)
    server = Server(nursery, config_path, parse_address(listen))
    await server.start()
    return server


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> Server:
    """A server on 127.0.0.1, a free port, with the brokers and regulators of :data:`CONFIG`."""
    return await _running(nursery, tmp_path, "127.0.0.1:0")


@pytest.fixture
async def unix_server(nursery: trio.Nursery, tmp_path: Path) -> Server:
    """The same on a Unix socket in the test's temporary directory."""
    return await _running(nursery, tmp_path, f"unix:{tmp_path / 'sbroker.sock'}")


@asynccontextmanager
async def served(server: Server, **kwargs: Any) -> AsyncIterator[Connection]:
    """A client connection to ``server`` (keyword arguments go to ``connect``), bounded in time."""
    with trio.fail_after(TIMEOUT * 3):
        async with connect(server.address, **kwargs) as conn:
            yield conn
