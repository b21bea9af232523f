"""``RemoteBroker`` and ``RemoteRegulator``: the in-process API as coroutines over a connection.

Every call of :class:`sbroker.Broker` and :class:`sbroker.regulator.Regulator`
has a twin here with the same name, parameters and result types, as a
coroutine: ``await broker.len()``. Policies, meters and valves travel as
protocol.md section 5 maps (:mod:`sbroker.service.config_maps`).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Hashable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from sbroker._errors import Dropped
from sbroker._results import Drop, Go, NotFound, Stop
from sbroker._statistics import BrokerStatistics
from sbroker.client._errors import ConnectionFailed, error_from_wire
from sbroker.client._pending import RemotePending
from sbroker.client._results import decode_broker_statistics, decode_match, decode_result
from sbroker.client._session import Monitor
from sbroker.meters import Meter
from sbroker.queues import QueuePolicy
from sbroker.regulator import Valve
from sbroker.service.config_maps import HostKind, host_from_map, host_to_map

if TYPE_CHECKING:
    from sbroker.client._connection import Connection

Result = Go | Drop
_fresh_tags = itertools.count(1)


def _fresh_tag(tag: Hashable) -> Hashable:
    """The caller's tag, or a fresh one that travels as a str."""
    return f"sbroker.client-tag-{next(_fresh_tags)}" if tag is None else tag


def _changes(parts: dict[str, Any]) -> dict[str, Any]:
    """A ``change_config`` map of the parts given (``None``: kept), protocol.md section 5."""
    return host_to_map({key: part for key, part in parts.items() if part is not None})


class _Remote:
    """What both remote hosts share: the connection, the name, the common calls."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self.name = name

    async def _async(
        self, method: str, value: Any, tag: Hashable, go_value: Any = None
    ) -> RemotePending:
        tag = _fresh_tag(tag)
        reply = await self._conn.start(method, self.name, value, {"tag": tag})
        return RemotePending(tag, reply, lambda raw: decode_match(raw, go_value))

    async def cancel(self, tag: Hashable) -> int:
        """Remove this connection's queued async requests tagged ``tag``; return how many."""
        return await self._conn.call("cancel", self.name, tag)  # type: ignore[no-any-return]

    async def len(self) -> int:
        """Requests waiting in the ask queue."""
        return await self._conn.call("len", self.name)  # type: ignore[no-any-return]

    async def _config(self, kind: HostKind, parts: tuple[str, str]) -> tuple[Any, ...]:
        """The ``config`` map as the in-process tuple, e.g. ``(ask, ask_r, meters)``."""
        raw = await self._conn.call("config", self.name)
        where = f"config of {kind} {self.name!r}"
        decoded = host_from_map(raw, kind, where, resolve_regulator=self._conn.regulator)
        return (decoded[parts[0]], decoded[parts[1]], tuple(decoded.get("meters", ())))

    async def estimate(self) -> tuple[int | None, int | None]:
        """The published BetterMeter sojourn estimates (ns) of ``ask`` and ``ask_r``,
        ``None`` where the host has no BetterMeter."""
        ask, ask_r = await self._conn.call("estimate", self.name)
        return ask, ask_r

    async def monitor(self, ref: Hashable) -> Monitor:
        """Watch the counterparty of the match ``ref`` (protocol.md S9).

        Returns a :class:`Monitor`: ``await monitor.wait()`` gives the reason
        once the counterparty is gone (``"closed"``, ``"done"``, ``"noproc"``,
        or ``"noconnection"`` when this connection is lost).
        """
        return await self._conn.monitor(self.name, ref)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} at {self._conn.address}>"


class RemoteBroker(_Remote):
    """A broker of a broker service; the coroutine twin of :class:`sbroker.Broker`."""

    async def ask(self, value: Any = None) -> Result:
        """Match with an ``ask_r`` caller, waiting in the ask queue if none waits.

        A trio cancellation withdraws the request (``cancel_request``); a
        ``Go`` the server made before the withdrawal arrived is returned.
        """
        return decode_match(await self._conn.call("ask", self.name, value))

    async def ask_r(self, value: Any = None) -> Result:
        """The mirror image of :meth:`ask`."""
        return decode_match(await self._conn.call("ask_r", self.name, value))

    async def nb_ask(self, value: Any = None) -> Result:
        """Match at once with a waiting ``ask_r``, else ``Drop``; never queues."""
        return decode_match(await self._conn.call("nb_ask", self.name, value))

    async def nb_ask_r(self, value: Any = None) -> Result:
        """The mirror image of :meth:`nb_ask`."""
        return decode_match(await self._conn.call("nb_ask_r", self.name, value))

    async def async_ask(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """Send an ask without waiting for its answer; return its :class:`RemotePending`."""
        return await self._async("ask", value, tag)

    async def async_ask_r(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """The mirror image of :meth:`async_ask`."""
        return await self._async("ask_r", value, tag)

    async def dynamic_ask(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """As :meth:`async_ask` (method ``dynamic_ask``).

        The wire gives only the final result, so whether the match was
        immediate is not known when the request is sent: always a pending.
        """
        return await self._async("dynamic_ask", value, tag)

    async def dynamic_ask_r(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """The mirror image of :meth:`dynamic_ask`."""
        return await self._async("dynamic_ask_r", value, tag)

    async def len_r(self) -> int:
        """Requests waiting in the ask_r queue."""
        return await self._conn.call("len_r", self.name)  # type: ignore[no-any-return]

    async def statistics(self) -> BrokerStatistics:
        """A snapshot, as :meth:`sbroker.Broker.statistics`."""
        return decode_broker_statistics(await self._conn.call("statistics", self.name))

    async def config(self) -> tuple[QueuePolicy, QueuePolicy, tuple[Meter, ...]]:
        """The running configuration: ``(ask, ask_r, meters)``."""
        return await self._config("broker", ("ask", "ask_r"))

    async def change_config(
        self,
        *,
        ask: QueuePolicy | None = None,
        ask_r: QueuePolicy | None = None,
        meters: Iterable[Meter] | None = None,
    ) -> None:
        """Reconfigure the running broker; ``None`` keeps a part.

        Raises :class:`~sbroker.client.InvalidConfig` (a ``ValueError``) if
        the server rejects it; nothing is changed then.
        """
        changes = _changes({"ask": ask, "ask_r": ask_r, "meters": meters})
        await self._conn.call("change_config", self.name, changes)


class RemoteRegulator(_Remote):
    """A regulator of a broker service; the coroutine twin of
    :class:`sbroker.regulator.Regulator`. A ``Go``'s ``value`` is this object."""

    def _match(self, raw: Any) -> Result:
        return decode_match(raw, self)

    async def ask(self, value: Any = None) -> Result:
        """Ask for a permit: ``Go`` (its ``ref`` is the permit) or ``Drop``.

        Release the permit with :meth:`done`, or use :meth:`permit`.
        """
        return self._match(await self._conn.call("ask", self.name, value))

    async def nb_ask(self, value: Any = None) -> Result:
        """A permit if the valve is open now, else ``Drop``; never queues."""
        return self._match(await self._conn.call("nb_ask", self.name, value))

    async def async_ask(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """Ask without waiting for the answer; return its :class:`RemotePending`."""
        return await self._async("ask", value, tag, self)

    async def dynamic_ask(self, value: Any = None, *, tag: Hashable = None) -> RemotePending:
        """As :meth:`async_ask` (method ``dynamic_ask``; see :meth:`RemoteBroker.dynamic_ask`)."""
        return await self._async("dynamic_ask", value, tag, self)

    async def continue_(self, ref: Hashable) -> Go | Stop | NotFound:
        """May the holder of permit ``ref`` keep running? ``Go``, ``Stop`` or ``NotFound``."""
        result = decode_result(await self._conn.call("continue", self.name, ref), self)
        if isinstance(result, Drop):
            raise ValueError(f"continue answered drop: {result!r}")
        return result

    async def done(self, ref: Hashable) -> bool:
        """Release permit ``ref``; ``False`` if it is unknown (or released already)."""
        return bool(await self._conn.call("done", self.name, ref))

    async def update(self, relative_time_ns: int) -> None:
        """Feed the valve a measurement in ns."""
        await self._conn.call("update", self.name, relative_time_ns)

    async def size(self) -> int:
        """Permits held."""
        return await self._conn.call("size", self.name)  # type: ignore[no-any-return]

    async def statistics(self) -> dict[str, Any]:
        """The server's statistics map of the regulator (times in ns)."""
        return await self._conn.call("statistics", self.name)  # type: ignore[no-any-return]

    async def config(self) -> tuple[QueuePolicy, Valve, tuple[Meter, ...]]:
        """The running configuration: ``(queue, valve, meters)``."""
        return await self._config("regulator", ("queue", "valve"))

    async def change_config(
        self,
        *,
        queue: QueuePolicy | None = None,
        valve: Valve | None = None,
        meters: Iterable[Meter] | None = None,
    ) -> None:
        """Reconfigure live; ``None`` keeps a part (see :meth:`RemoteBroker.change_config`)."""
        changes = _changes({"queue": queue, "valve": valve, "meters": meters})
        await self._conn.call("change_config", self.name, changes)

    @asynccontextmanager
    async def permit(self, value: Any = None) -> AsyncIterator[Go]:
        """Hold a permit for the block; ``done`` releases it however the block exits.

        Raises :class:`~sbroker.Dropped` (carrying the ``Drop``) if the ask is
        dropped. If the connection is lost meanwhile the server has released
        the permit already (S7), and nothing more is sent.
        """
        session = await self._conn.current_session()
        error, raw = await session.call("ask", [self.name, value])
        if error is not None:
            raise error_from_wire(error)
        result = self._match(raw)
        if isinstance(result, Drop):
            raise Dropped(result)
        try:
            yield result
        finally:
            if session.alive:
                # Shielded, bounded and not a parked call: a hung server cannot hold us.
                with trio.move_on_after(self._conn.connect_timeout) as scope:
                    scope.shield = True
                    try:
                        await session.start("done", [self.name, result.ref]).wait()
                    except ConnectionFailed:
                        pass  # the server released it with the connection (S7)
