"""Running a service inside the test's trio run, on 127.0.0.1 port 0 or a Unix socket."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from msgpack_rpc_client import RpcClient

from sbroker.service.config import ServiceConfig, parse_config
from sbroker.service.listen import Address, bound_address, open_listeners
from sbroker.service.server import Service

#: Every wait in the service tests is bounded by this (seconds).
TIMEOUT = 10

#: A broker and a regulator whose queues never drop on their own.
CONFIG = """
[brokers.db]
ask = { policy = "timeout", timeout = inf }
ask_r = { policy = "timeout", timeout = inf }

[regulators.pool]
queue = { policy = "timeout", timeout = inf }
valve = { valve = "open", max_size = 1 }
"""


def config_from(text: str, base_dir: str = ".", **server: Any) -> ServiceConfig:
    """A configuration from TOML text, with ``[server]`` settings overridden."""
    config = parse_config(text, "test.toml", base_dir=base_dir)
    return attrs.evolve(config, server=attrs.evolve(config.server, **server))


@attrs.define
class Served:
    """A running service and where it listens."""

    service: Service
    address: Address

    async def connect(self) -> RpcClient:
        if self.address.kind == "unix":
            assert self.address.path is not None
            return await RpcClient.connect_unix(self.address.path)
        assert self.address.port is not None
        return await RpcClient.connect(self.address.port)


@asynccontextmanager
async def serving(
    config: ServiceConfig | str = "",
    *,
    unix_path: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **server: Any,
) -> AsyncIterator[Served]:
    """Run a service for the block (TLS on TCP with ``ssl_context``); stop it (S13) on exit."""
    if isinstance(config, str):
        config = config_from(config, **server)
    service = Service(config)
    address = Address("unix", path=unix_path) if unix_path else Address("tcp", "127.0.0.1", 0)
    listeners = await open_listeners([address], ssl_context=ssl_context)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve, listeners)
        try:
            yield Served(service, bound_address(listeners[0]))
        finally:
            service.stop()


async def wait_until(predicate: Any, what: str = "condition") -> None:
    """Poll ``predicate()`` with short sleeps (the caller bounds it with fail_after)."""
    while not predicate():
        await trio.sleep(0.005)


async def connect_when_ready(connect: Callable[[], Awaitable[RpcClient]]) -> RpcClient:
    """Connect to a server process that may not be listening yet (the caller bounds it)."""
    while True:
        try:
            return await connect()
        except OSError:
            await trio.sleep(0.05)


def tmp_socket(tmp_path: Any) -> str:
    """A short Unix socket path (sun_path is limited to ~100 bytes)."""
    path = os.path.join(str(tmp_path), "s.sock")
    return path if len(path) < 100 else f"/tmp/sbroker-test-{os.getpid()}.sock"
