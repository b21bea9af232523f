"""The Balancer: one broker's face over many brokers, local and remote (balancing.md §2-§4).

Each request goes to one endpoint, chosen at call time by the policy from the
:class:`~sbroker.balance.ejection.EndpointTable`; matching stays inside that
endpoint. The pick runs in the calling task and indexes a list (O(1) in the
number of endpoints); only remote calls, discovery, estimate refresh (L3),
the protector's meter and async-request bookkeeping run in the balancer's
background tasks.

Outcomes feed the table: an answer (``Go``, ``Drop``, ...) is a success, an
endpoint failure (L4) a failure. A failure before the request was written is
retried once on another endpoint; one after it may have been queued is
answered ``Drop``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from sbroker._errors import BrokerClosed, RequestCancelled
from sbroker._pending import Pending
from sbroker._results import Drop, Go, NotFound, Stop
from sbroker._time import now_ns, to_trio_time
from sbroker._units import to_ns
from sbroker.balance.choice import pick_best_of_two, pick_least_loaded
from sbroker.balance.discovery import Discovery, Retry
from sbroker.balance.ejection import Ejection, EndpointTable, Entry
from sbroker.balance.endpoints import Endpoints
from sbroker.balance.remote import (
    ClientConnector,
    Connector,
    NotWritten,
    RemoteEndpoint,
    ServerPool,
    parse_endpoint,
)
from sbroker.meters import Meter, MeterState, Protector, Sample

__all__ = ["Balancer", "EndpointInfo", "NoEndpoint", "Policy", "open_balancer"]

Policy = Literal["random", "round_robin", "least_loaded", "best_of_two", "best_of_two_20"]
POLICIES = ("random", "round_robin", "least_loaded", "best_of_two", "best_of_two_20")

#: B5: best_of_two_20 reads estimates on this share of its picks.
_BETTER_SHARE = 0.2

#: L3: a new remote endpoint is as bad as BetterMeter's default ``upper`` until it reports.
_PESSIMISTIC = to_ns(5.0)


class NoEndpoint(BrokerClosed):
    """No endpoint could take the request (L4). ``tried`` names the endpoints tried."""

    def __init__(self, message: str, tried: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.tried = tried


@attrs.frozen
class EndpointInfo:
    """One endpoint as :meth:`Balancer.endpoints` reports it (E4).

    Attributes:
        endpoint: the broker object or URL string, as given.
        state: ``"up"``, ``"ejected"`` or ``"probing"``.
        failures: consecutive failures.
        in_flight: this balancer's requests there now.
        estimates: ``(ask, ask_r)`` in ns, ``None`` where unknown or stale.
        ejected_until: trio time (seconds) the ejection ends, or ``None``.
    """

    endpoint: Any
    state: str
    failures: int
    in_flight: int
    estimates: tuple[int | None, int | None]
    ejected_until: float | None


#: L4: failures of a call that may have been written (and queued).
_MAYBE_QUEUED = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Balancer:
    """Spread requests over brokers and regulators, in-process or remote.

    Args:
        endpoints: an :class:`~sbroker.balance.Endpoints` source, or a list of
            endpoints (``Broker``/``Regulator`` objects, or URLs
            ``"tcp://HOST:PORT/NAME"``, ``"unix:///PATH#NAME"``).
        policy: ``"random"``, ``"round_robin"``, ``"least_loaded"``,
            ``"best_of_two"`` or ``"best_of_two_20"`` (L2).
        ejection: an :class:`Ejection`, or ``None`` to never eject (E1-E3).
        protector: ``None``, or a meter such as
            :class:`~sbroker.meters.PieMeter` whose gate drops requests
            before any endpoint is chosen (``Drop(0)``), fed every sample
            from the endpoints' estimates and this balancer's requests.
        rng: the random source of picks and jitter.
        update: seconds between refreshes of a remote endpoint's estimates (L3).
        stale_after: seconds after which an estimate counts as missing
            (default ``5 x update``).
        connect_timeout: seconds to open a connection to a server (L4).
        retry: the discovery schedule (D2).
        connector: how remote servers are reached (default: ``sbroker.client``).

    Run it with :func:`open_balancer` (or ``nursery.start(balancer.run)``):
    discovery, remote connections and estimate refresh live in its tasks.
    """

    def __init__(
        self,
        endpoints: Endpoints | Iterable[Any],
        policy: Policy = "best_of_two",
        ejection: Ejection | None = Ejection(),
        protector: Meter | None = None,
        rng: random.Random | None = None,
        *,
        update: float = 0.1,
        stale_after: float | None = None,
        connect_timeout: float = 5.0,
        retry: Retry = Retry(),
        connector: Connector | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        if ejection is not None and not isinstance(ejection, Ejection):
            raise TypeError(f"ejection must be an Ejection or None, got {ejection!r}")
        self._rng = random.Random() if rng is None else rng
        self._policy = policy
        self._table = EndpointTable(ejection, self._rng)
        self._update = to_ns(update)
        self._stale_after = to_ns(5 * update if stale_after is None else stale_after)
        self._connector = ClientConnector() if connector is None else connector
        self._pool = ServerPool(self._connector, connect_timeout)
        self._cursor = 0
        self._pick_now = 0  # the time of the pick in progress, for estimate staleness
        self._choose = {
            "random": self._pick_random,
            "round_robin": self._pick_round_robin,
            "least_loaded": self._pick_least_loaded,
            "best_of_two": self._pick_best_of_two,
            "best_of_two_20": self._pick_best_of_two_20,
        }[policy]
        self._readers = {"ask": self._reader("ask"), "ask_r": self._reader("ask_r")}
        self._permits: dict[Hashable, Entry] = {}
        self._protector_meter = protector
        self._protector: Protector | None = None
        self._alarms: frozenset[str] = frozenset()
        self._in_flight = {"ask": 0, "ask_r": 0}
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._discovery: Discovery | None = None
        if isinstance(endpoints, Endpoints):
            self._discovery = Discovery(endpoints, retry, self._reconcile)
        else:
            for endpoint in endpoints:
                self.add(endpoint)

    # -- the set (D1, E4) --------------------------------------------------------------

    def add(self, endpoint: Any) -> None:
        """Add an endpoint; adding one already present does nothing (its state is kept)."""
        now = self._now()
        if endpoint in self._table.entries:
            return
        if isinstance(endpoint, str):
            address, name = parse_endpoint(endpoint)
            target: Any = RemoteEndpoint(endpoint, self._pool.acquire(address), name)
        elif callable(getattr(endpoint, "estimate", None)) and callable(
            getattr(endpoint, "ask", None)
        ):
            target = endpoint
        else:
            raise TypeError(f"an endpoint is a Broker, a Regulator or a URL; got {endpoint!r}")
        entry = self._table.add(endpoint, target, now)
        if entry is not None and isinstance(target, RemoteEndpoint):
            entry.estimates = (_PESSIMISTIC, _PESSIMISTIC)
            entry.estimated_at = now

    def remove(self, endpoint: Any) -> None:
        """Remove an endpoint; its requests in flight finish there (D1)."""
        entry = self._table.remove(endpoint)
        if entry is not None and isinstance(entry.target, RemoteEndpoint):
            entry.target.server.endpoints -= 1
            self._pool.release(entry.target.server)

    def endpoints(self) -> list[EndpointInfo]:
        """E4: one frozen record per endpoint, in the order they were added."""
        now = self._now()
        return [
            EndpointInfo(
                endpoint=entry.key,
                state=entry.state,
                failures=entry.failures,
                in_flight=entry.in_flight,
                estimates=(self._read(entry, "ask", now), self._read(entry, "ask_r", now)),
                ejected_until=None
                if entry.state == "up" or entry.ejected_until is None
                else to_trio_time(entry.ejected_until),
            )
            for entry in self._table.entries.values()
        ]

    def _reconcile(self, endpoints: list[Any]) -> None:
        """D2: make the set equal ``endpoints``; survivors keep their state."""
        wanted = dict.fromkeys(endpoints)
        for key in [key for key in self._table.entries if key not in wanted]:
            self.remove(key)
        for endpoint in wanted:
            self.add(endpoint)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """D3: return once the first lookup produced an endpoint.

        Raises :class:`TimeoutError` after ``timeout`` seconds, naming the
        source and its last error.
        """
        if self._discovery is None:
            await trio.lowlevel.checkpoint()  # a list: ready from the start
        else:
            await self._discovery.wait_ready(timeout)

    def _failure(self, exc: BaseException) -> Literal["not_written", "maybe_queued"] | None:
        """L4: classify an exception raised by an endpoint call (``None``: not a failure)."""
        if isinstance(exc, (NotWritten, BrokerClosed)):
            return "not_written"
        if isinstance(exc, _MAYBE_QUEUED):
            return "maybe_queued"
        if isinstance(exc, Exception) and isinstance(exc, self._remote_errors()):
            return "maybe_queued"
        return None

    def _remote_errors(self) -> tuple[type[BaseException], ...]:
        if not self._pool.servers:
            return ()
        return self._connector.errors

    # -- estimates (L3) --------------------------------------------------------------------

    def _now(self) -> int:
        try:
            return now_ns()
        except RuntimeError:
            return 0

    def _read(self, entry: Entry, side: str, now: int) -> int | None:
        target = entry.target
        if not isinstance(target, RemoteEndpoint):
            result: int | None = target.estimate(side)
            return result
        if entry.estimated_at is None or now - entry.estimated_at > self._stale_after:
            return None
        return entry.estimates[0 if side == "ask" else 1]

    def _reader(self, side: str) -> Callable[[Entry], int | None]:
        def read(entry: Entry) -> int | None:
            return self._read(entry, side, self._pick_now)

        return read

    async def _refresh_estimates(self) -> None:
        """L3: one task refreshes every remote endpoint's estimates each ``update``."""
        while True:
            if not self._pool.servers:  # no remote endpoint: nothing to refresh
                await trio.sleep(to_trio_time(self._update))
                continue
            for entry in [e for e in self._table.entries.values() if e.state == "up"]:
                target = entry.target
                if not isinstance(target, RemoteEndpoint):
                    continue
                with trio.move_on_after(to_trio_time(self._update)):
                    try:
                        estimates = await target.call(self._pool, "estimate")
                    except Exception as exc:  # an endpoint failure: the estimate goes stale
                        if self._failure(exc) is None:
                            raise
                    else:
                        entry.estimates = (estimates[0], estimates[1])
                        entry.estimated_at = now_ns()
            await trio.sleep(to_trio_time(self._update))

    # -- picking (L2, E3) --------------------------------------------------------------------

    def _pick_random(self, candidates: list[Entry], side: str) -> Entry:
        return candidates[self._rng.randrange(len(candidates))]

    def _pick_round_robin(self, candidates: list[Entry], side: str) -> Entry:
        cursor = self._cursor = self._cursor + 1
        return candidates[cursor % len(candidates)]

    def _pick_least_loaded(self, candidates: list[Entry], side: str) -> Entry:
        return pick_least_loaded(candidates, self._rng)

    def _pick_best_of_two(self, candidates: list[Entry], side: str) -> Entry:
        return pick_best_of_two(candidates, self._readers[side], self._rng)

    def _pick_best_of_two_20(self, candidates: list[Entry], side: str) -> Entry:
        if self._rng.random() < _BETTER_SHARE:
            return pick_best_of_two(candidates, self._readers[side], self._rng)
        return candidates[self._rng.randrange(len(candidates))]

    def _pick(self, side: str, tried: list[Entry]) -> tuple[Entry, bool]:
        """The entry for one request and whether it is the probe; NoEndpoint if none."""
        now = self._pick_now = now_ns()
        probe = self._table.lease_probe(now)
        if probe is not None:
            return probe, True
        candidates = self._table.candidates()
        if tried:  # the retry (L4): a uniform other endpoint; off the hot path
            candidates = [entry for entry in candidates if entry not in tried]
        if not candidates:
            raise NoEndpoint(
                f"no endpoint can take the request (tried {[e.key for e in tried]!r})",
                tuple(e.key for e in tried),
            )
        if tried:
            return self._pick_random(candidates, side), False
        return self._choose(candidates, side), False

    # -- requests (L1, L4) ----------------------------------------------------------------------

    async def _request(self, method: str, side: str, *args: Any, **kwargs: Any) -> Any:
        """Send one request to a chosen endpoint, retrying once if it was never written."""
        if self._closed:
            raise BrokerClosed("the balancer is closed")
        protector = self._protector
        if protector is not None and not protector.admit(side):
            await trio.lowlevel.checkpoint()
            return Drop(0)
        tried: list[Entry] = []
        start = now_ns()
        while True:
            entry, probe = self._pick(side, tried)
            try:
                return await self._send(entry, probe, method, side, start, *args, **kwargs)
            except NotWritten:
                tried.append(entry)
                if len(tried) == 2:
                    raise NoEndpoint(
                        f"no endpoint could take the request: {[e.key for e in tried]!r} failed",
                        tuple(e.key for e in tried),
                    ) from None

    async def _send(
        self, entry: Entry, probe: bool, method: str, side: str, start: int, *args: Any,
        **kwargs: Any,
    ) -> Any:
        """One attempt on ``entry``; outcomes go to the table (E1-E3)."""
        self._begin(entry, side)
        settled = True
        try:
            target = entry.target
            if isinstance(target, RemoteEndpoint):
                result = await target.call(self._pool, method, *args, **kwargs)
            else:
                result = getattr(target, method)(*args, **kwargs)
                if method in ("ask", "ask_r"):
                    result = await result
        except BaseException as exc:
            kind = self._failure(exc)
            now = now_ns()
            if kind is None:
                if probe:
                    self._table.released(entry, now)
                raise
            self._table.failed(entry, probe, now)
            if isinstance(entry.target, RemoteEndpoint) and kind == "maybe_queued":
                self._pool.disconnect(entry.target.server)
            if kind == "not_written":
                raise NotWritten(str(exc)) from exc
            return Drop(max(0, now - start))
        else:
            self._table.succeeded(entry, probe, now_ns())
            if isinstance(result, Pending) or _is_remote_pending(result):
                settled = False
                self._watch(entry, side, result)
            elif method == "ask" and isinstance(result, Go) and _is_permit(entry.target, result):
                self._permits[result.ref] = entry
            return result
        finally:
            if settled:
                self._end(entry, side)

    def _begin(self, entry: Entry, side: str) -> None:
        entry.in_flight += 1
        self._in_flight[side] += 1
        target = entry.target
        if isinstance(target, RemoteEndpoint):
            target.server.in_flight += 1

    def _end(self, entry: Entry, side: str) -> None:
        entry.in_flight -= 1
        self._in_flight[side] -= 1
        target = entry.target
        if isinstance(target, RemoteEndpoint):
            target.server.in_flight -= 1
            self._pool.release(target.server)

    def _watch(self, entry: Entry, side: str, pending: Any) -> None:
        """E4: a queued async request counts as in flight until it is settled or cancelled."""
        if self._nursery is None:
            self._end(entry, side)
            return
        self._nursery.start_soon(self._wait_settled, entry, side, pending)

    async def _wait_settled(self, entry: Entry, side: str, pending: Any) -> None:
        try:
            await pending.wait()
        except (RequestCancelled, BrokerClosed, OSError):
            pass
        except Exception as exc:
            if self._failure(exc) is None:
                raise
        finally:
            self._end(entry, side)

    async def ask(self, value: Any = None) -> Any:
        """``ask`` on the chosen endpoint: ``Go`` or ``Drop``."""
        return await self._request("ask", "ask", value)

    async def ask_r(self, value: Any = None) -> Any:
        """``ask_r`` on the chosen endpoint: ``Go`` or ``Drop``."""
        return await self._request("ask_r", "ask_r", value)

    async def nb_ask(self, value: Any = None) -> Any:
        """``nb_ask`` on the chosen endpoint: never waits in its queue."""
        return await self._request("nb_ask", "ask", value)

    async def nb_ask_r(self, value: Any = None) -> Any:
        """``nb_ask_r`` on the chosen endpoint: never waits in its queue."""
        return await self._request("nb_ask_r", "ask_r", value)

    async def async_ask(self, value: Any = None, *, tag: Hashable = None) -> Any:
        """``async_ask`` on the chosen endpoint; returns its pending once queued or settled."""
        return await self._request("async_ask", "ask", value, tag=tag)

    async def async_ask_r(self, value: Any = None, *, tag: Hashable = None) -> Any:
        """``async_ask_r`` on the chosen endpoint; returns its pending once queued or settled."""
        return await self._request("async_ask_r", "ask_r", value, tag=tag)

    async def dynamic_ask(self, value: Any = None, *, tag: Hashable = None) -> Any:
        """``dynamic_ask`` on the chosen endpoint: a result now, or a pending."""
        return await self._request("dynamic_ask", "ask", value, tag=tag)

    async def dynamic_ask_r(self, value: Any = None, *, tag: Hashable = None) -> Any:
        """``dynamic_ask_r`` on the chosen endpoint: a result now, or a pending."""
        return await self._request("dynamic_ask_r", "ask_r", value, tag=tag)

    async def cancel(self, tag: Hashable) -> int:
        """Cancel the queued requests tagged ``tag`` on every endpoint; return how many."""
        count = 0
        for entry in list(self._table.entries.values()):
            target = entry.target
            try:
                if isinstance(target, RemoteEndpoint):
                    count += await target.call(self._pool, "cancel", tag)
                else:
                    count += target.cancel(tag)
            except Exception as exc:
                if self._failure(exc) is None:
                    raise
        return count

    async def continue_(self, ref: Hashable) -> Go | Stop | NotFound:
        """``continue_`` on the regulator that granted permit ``ref``."""
        entry = self._permits.get(ref)
        if entry is None:
            return NotFound(0)
        result = await self._permit_call(entry, "continue_", ref)
        if not isinstance(result, Go):
            self._permits.pop(ref, None)
        return result  # type: ignore[no-any-return]

    async def done(self, ref: Hashable) -> bool:
        """``done`` on the regulator that granted permit ``ref``; ``False`` if unknown."""
        entry = self._permits.pop(ref, None)
        if entry is None:
            return False
        return bool(await self._permit_call(entry, "done", ref))

    async def _permit_call(self, entry: Entry, method: str, ref: Hashable) -> Any:
        target = entry.target
        if isinstance(target, RemoteEndpoint):
            return await target.call(self._pool, method, ref)
        return getattr(target, method)(ref)

    # -- the protector (sprotector) ---------------------------------------------------------------

    def set_alarm(self, description: str, active: bool) -> None:
        """MeterHost: an alarm of the protector meter."""
        self._alarms = self._alarms | {description} if active else self._alarms - {description}

    def set_protector(self, protector: Protector | None) -> None:
        """MeterHost: the gate every request passes before an endpoint is chosen."""
        self._protector = protector

    def alarms(self) -> frozenset[str]:
        """The active alarms of the protector meter."""
        return self._alarms

    def _sample(self, now: int) -> Sample:
        """What the protector meter sees: the best endpoint's waits, our requests in flight."""
        candidates = self._table.candidates()
        asks = [e for e in (self._read(c, "ask", now) for c in candidates) if e is not None]
        ask_rs = [e for e in (self._read(c, "ask_r", now) for c in candidates) if e is not None]
        best_ask = min(asks, default=0)
        relative_time = best_ask if best_ask > 0 else -min(ask_rs, default=0)
        return Sample(now, 0, 0, relative_time, self._in_flight["ask"], self._in_flight["ask_r"])

    async def _run_protector(self, meter: Meter) -> None:
        state: MeterState
        state, wake = meter.init(self, now_ns())
        try:
            while True:
                if wake is None:
                    await trio.sleep_forever()
                else:
                    await trio.sleep_until(to_trio_time(wake))
                now = now_ns()
                wake = state.update(self._sample(now))
                if wake is not None:
                    wake = max(wake, now + 1)
        finally:
            state.close()

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The background tasks: discovery, remote connections, estimates, the protector.

        Runs until cancelled; then the balancer is closed.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self._pool.nursery = nursery
                if self._discovery is not None:
                    nursery.start_soon(self._discovery.run)
                nursery.start_soon(self._refresh_estimates)
                if self._protector_meter is not None:
                    nursery.start_soon(self._run_protector, self._protector_meter)
                task_status.started()
        finally:
            self._closed = True
            self._nursery = self._pool.nursery = None

    def __repr__(self) -> str:
        return f"<Balancer {self._policy} endpoints={len(self._table.entries)}>"


def _is_remote_pending(result: Any) -> bool:
    return not isinstance(result, (Go, Drop, Stop, NotFound)) and callable(
        getattr(result, "wait", None)
    )


def _is_permit(target: Any, go: Go) -> bool:
    """A regulator's Go: its ref must be kept to route ``continue_``/``done`` (L1)."""
    if isinstance(target, RemoteEndpoint):
        return bool(go.value == target.name)  # protocol.md: a permit's value is the name
    return callable(getattr(target, "continue_", None))


@asynccontextmanager
async def open_balancer(*args: Any, **kwargs: Any) -> AsyncIterator[Balancer]:
    """Create a :class:`Balancer` (same arguments), run it for the block, stop it after."""
    balancer = Balancer(*args, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(balancer.run)
        try:
            yield balancer
        finally:
            nursery.cancel_scope.cancel()

