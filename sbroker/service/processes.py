"""``sbroker serve --processes N``: N server processes from one configuration file.

Process ``i`` (from 0) serves the same brokers and regulators, each its own,
on every TCP listen address's port plus ``i`` (consecutive ports) and every
Unix socket path with ``.i`` appended (none for process 0). The parent only
supervises: it starts the children, passes SIGHUP on (each reloads the file),
and on SIGTERM or SIGINT, or when any child exits, stops the others by pid and
waits for them. Its exit status is 0 when every child exited 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import attrs
import trio

from sbroker.service.listen import Address

__all__ = ["child_addresses", "child_command", "supervise"]

logger = logging.getLogger("sbroker.service")


def child_addresses(addresses: Sequence[Address], index: int) -> tuple[Address, ...]:
    """The addresses process ``index`` listens on; ``ValueError`` for a TCP port 0 or a
    port past 65535."""
    shifted = []
    for address in addresses:
        if address.kind == "unix":
            suffix = "" if index == 0 else f".{index}"
            shifted.append(attrs.evolve(address, path=f"{address.path}{suffix}"))
            continue
        assert address.port is not None
        if address.port == 0:
            raise ValueError(f"--processes needs fixed ports, and {address} has port 0")
        if address.port + index > 65535:
            raise ValueError(f"--processes: {address} leaves no room for consecutive ports")
        shifted.append(attrs.evolve(address, port=address.port + index))
    return tuple(shifted)


def child_command(
    config: str | None,
    addresses: Sequence[Address],
    *,
    token_file: str | None,
    insecure: bool,
    metrics: tuple[str, int] | None = None,
) -> list[str]:
    """The command line of one child server (``metrics``: its exporter's HOST, PORT)."""
    command = [sys.executable, "-m", "sbroker", "serve"]
    if config is not None:
        command += ["--config", config]
    for address in addresses:
        command += ["--listen", str(address)]
    if token_file is not None:
        command += ["--token-file", token_file]
    if insecure:
        command.append("--insecure")
    if metrics is not None:
        host, port = metrics
        command += ["--metrics", f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    return command


async def supervise(commands: Sequence[Sequence[str]]) -> int:
    """Run one child per command until a signal or a child's exit; stop every child."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        children = [await trio.lowlevel.open_process(list(command)) for command in commands]
        logger.info(
            "started %d server processes: pids %s", len(children), [c.pid for c in children]
        )
        try:
            async with trio.open_nursery() as nursery:
                exited = trio.Event()
                for child in children:
                    nursery.start_soon(_watch, child, exited)
                nursery.start_soon(_relay, signals, children, exited)
                await exited.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for child in children:
                    if child.returncode is None:
                        child.send_signal(signal.SIGTERM)
                for child in children:
                    await child.wait()
    statuses = [child.returncode for child in children]
    logger.info("server processes exited: %s", statuses)
    return 0 if all(status == 0 for status in statuses) else 1


async def _watch(child: trio.Process, exited: trio.Event) -> None:
    await child.wait()
    exited.set()


async def _relay(
    signals: AsyncIterator[int],
    children: Sequence[trio.Process],
    exited: trio.Event,
) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            for child in children:
                if child.returncode is None:
                    child.send_signal(signal.SIGHUP)
            continue
        logger.info("signal %s: stopping the server processes", signal.Signals(signum).name)
        exited.set()
        return
