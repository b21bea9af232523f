"""Endpoint sources: where a balancer's set of endpoints comes from (balancing.md D2).

A source is an :class:`Endpoints` object: ``await source.get()`` returns the
current list of endpoints (raising on failure), and ``await
source.wait_changed()`` returns early when the source knows the list changed
(a rewritten file). The balancer's discovery task calls them on the schedule
of :class:`~sbroker.balance.Retry`, with at most one lookup in flight.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import trio

__all__ = ["DnsEndpoints", "Endpoints", "FileEndpoints", "StaticEndpoints"]


class Endpoints:
    """The base of endpoint sources. Subclass it and implement :meth:`get`.

    ``refresh = False`` says the list never changes: it is fetched until the
    first success, then never again.
    """

    refresh = True

    async def get(self) -> Sequence[Any]:
        """The current endpoints; raise if they cannot be fetched now."""
        raise NotImplementedError

    async def wait_changed(self) -> None:
        """Return when the endpoints may have changed (default: never)."""
        await trio.sleep_forever()


class StaticEndpoints(Endpoints):
    """A fixed list of endpoints (brokers, regulators or URLs)."""

    refresh = False

    def __init__(self, endpoints: Iterable[Any]) -> None:
        self._endpoints = list(endpoints)

    async def get(self) -> Sequence[Any]:
        """The list given."""
        await trio.lowlevel.checkpoint()
        return list(self._endpoints)

    def __repr__(self) -> str:
        return f"StaticEndpoints({self._endpoints!r})"


class FileEndpoints(Endpoints):
    """Endpoint URLs from a text file, one a line; blank lines and ``#`` lines are skipped.

    The file is re-read when its modification time or size changes, checked
    every ``poll`` seconds.
    """

    def __init__(self, path: str | os.PathLike[str], *, poll: float = 1.0) -> None:
        self._path = trio.Path(path)
        self._poll = poll
        self._seen: tuple[int, int] | None = None

    async def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = await self._path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def get(self) -> Sequence[Any]:
        """The URLs in the file now."""
        stamp = await self._stamp()
        text = await self._path.read_text()
        self._seen = stamp
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith("#")]

    async def wait_changed(self) -> None:
        """Return once the file's modification time or size differs from the last read."""
        while True:
            await trio.sleep(self._poll)
            if await self._stamp() != self._seen:
                return

    def __repr__(self) -> str:
        return f"FileEndpoints({str(self._path)!r})"


class DnsEndpoints(Endpoints):
    """Endpoints from DNS: SRV records of ``name``, else its A/AAAA records with ``port``.

    Each record becomes ``"tcp://HOST:PORT/BROKER"``. Lookups use dnspython's
    asynchronous resolver, which runs on trio; pass ``resolver`` (an object
    with dnspython's ``async resolve(name, rdtype)``) to use another.
    """

    def __init__(
        self, name: str, port: int | None = None, *, broker: str = "default",
        resolver: Any = None,
    ) -> None:
        self._name = name
        self._port = port
        self._broker = broker
        self._resolver = resolver

    def _get_resolver(self) -> Any:
        if self._resolver is None:
            import dns.asyncresolver

            self._resolver = dns.asyncresolver.Resolver()
        return self._resolver

    async def get(self) -> Sequence[Any]:
        """Resolve now: SRV first; without SRV records, A and AAAA with ``port``."""
        import dns.exception
        import dns.resolver

        resolver = self._get_resolver()
        try:
            answer = await resolver.resolve(self._name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            answer = None
        if answer is not None:
            return [self._url(str(record.target).rstrip("."), record.port) for record in answer]
        if self._port is None:
            raise LookupError(f"{self._name}: no SRV records, and no port for A/AAAA")
        hosts: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                hosts += [record.address for record in await resolver.resolve(self._name, rdtype)]
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                pass
        if not hosts:
            raise LookupError(f"{self._name}: no SRV, A or AAAA records")
        return [self._url(host, self._port) for host in hosts]

    def _url(self, host: str, port: int) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"tcp://{host}:{port}/{self._broker}"

    def __repr__(self) -> str:
        return f"DnsEndpoints({self._name!r}, {self._port!r})"
