"""A connection pool that drops early under overload: sbroker's "error isolation" pattern.

Theory of operation
-------------------

One task per connection (a *holder*) owns it: it opens the connection, offers
it to clients with ``broker.ask_r(lease)``, waits until the client gives it
back, checks it and offers it again. Clients check out with ``broker.ask()``:
they are matched with an idle connection, or wait in the ask queue, whose
policy (an :class:`~sbroker.queues.AdaptiveQueue` by default) drops them early
when the pool cannot keep up. A dropped checkout raises
:class:`~sbroker.Dropped`. Only open connections wait in the ask_r queue, so a
client is never matched with a connection that is still opening or backing
off after a failed connect: errors stay with the holder (isolated), and
clients wait for a connection that works or are dropped by their policy.

How many holders exist is decided by a :class:`~sbroker.regulator.Regulator`:
a holder lives while it holds a permit, and a spawner task keeps asking for
permits and starts one holder per grant. An
:class:`~sbroker.meters.UpdateMeter` on the broker sends the regulator the
broker's ``ask_r`` relative time, which is positive while connections wait
for clients and negative while clients wait for connections. The valve
(:class:`~sbroker.regulator.RelativeValve` by default) opens once per update
below its target, so the pool grows while connections are busy; an idle
holder asks ``regulator.continue_(permit)`` every ``IDLE_CHECK`` seconds and
closes its connection when told ``Stop``, so the pool shrinks when idle.
The valve's ``min_size``/``max_size`` are the pool's.

A connection whose checkout block raised one of ``discard_on`` (also inside an
``ExceptionGroup``), that fails ``check``, outlived ``max_lifetime`` or sat
idle ``max_idle`` is closed, and its holder opens a new one (when idle, only
if the regulator lets it continue). Leaving ``open_pool`` closes the broker
(waiting clients are dropped), then every connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Generic, Literal, TypeVar

import attrs
import trio

from sbroker._broker import Broker
from sbroker._errors import BrokerClosed, Dropped
from sbroker._pending import Pending
from sbroker._queue_side import validate_policy
from sbroker._results import Drop, Go
from sbroker._statistics import PoolStatistics
from sbroker._validators import check_bounds, check_count, check_duration
from sbroker.meters import UpdateMeter
from sbroker.queues import AdaptiveQueue, QueuePolicy, TimeoutQueue
from sbroker.regulator import Regulator, RelativeValve, Valve
from sbroker.regulator._regulator import validate_valve

__all__ = ["Pool", "PoolStatistics", "open_pool"]

logger = logging.getLogger("sbroker")

T = TypeVar("T")

#: Seconds between an idle holder's questions to the regulator: may the pool keep me?
IDLE_CHECK = 1.0
#: Period (s) of the UpdateMeter feeding the broker's relative time to the regulator.
UPDATE_EVERY = 0.05
#: Back-off after a failed connect: the first delay and the cap (s); jittered 0.5x..1x.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
#: Seconds ``close(conn)`` may take (it runs shielded from cancellation) before it is abandoned.
CLOSE_TIMEOUT = 5.0


class _Lease(Generic[T]):
    """What a holder offers with ``ask_r``: the connection, and the way to give it back."""

    __slots__ = ("conn", "error", "returned")

    def __init__(self, conn: T) -> None:
        self.conn = conn
        self.error: BaseException | None = None
        self.returned = trio.Event()

    def give_back(self, error: BaseException | None) -> None:
        self.error = error
        self.returned.set()


def _discards(error: BaseException | None, kinds: tuple[type[BaseException], ...]) -> bool:
    """Is ``error`` (or an exception inside it, if it is a group) one of ``kinds``?"""
    if error is None or not kinds:
        return False
    if isinstance(error, kinds):
        return True
    return isinstance(error, BaseExceptionGroup) and error.subgroup(kinds) is not None


def _pool_valve(valve: object, min_size: int, max_size: int) -> Valve:
    """The regulator's valve: ``valve`` with the pool's ``min_size`` and ``max_size``."""
    checked = validate_valve(valve)
    kind = type(checked)
    fields = attrs.fields_dict(kind) if attrs.has(kind) else {}
    if "max_size" not in fields:
        raise TypeError(f"valve must be a valve with a max_size field, got {valve!r}")
    sizes: dict[str, int] = {"max_size": max_size}
    if "min_size" in fields:  # an OpenValve has none: it opens up to max_size
        sizes["min_size"] = min_size
    return attrs.evolve(checked, **sizes)  # type: ignore[misc]


def _check_callable(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not callable(value):
        raise TypeError(f"{name} must be an async callable, got {value!r}")


def _check_discard_on(value: object) -> tuple[type[BaseException], ...]:
    kinds = (value,) if isinstance(value, type) else value
    if not isinstance(kinds, Iterable) or isinstance(kinds, (str, bytes)):
        raise TypeError(f"discard_on must be a tuple of exception classes, got {value!r}")
    kinds = tuple(kinds)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"discard_on must hold exception classes, got {kind!r}")
    return kinds


class Pool(Generic[T]):
    """A pool of connections made by ``connect``; create it with :func:`open_pool`.

    Check a connection out with ``async with pool.checkout() as conn:``.
    """

    def __init__(
        self,
        broker: Broker,
        regulator: Regulator,
        connect: Callable[[], Awaitable[T]],
        close: Callable[[T], Awaitable[Any]] | None,
        check: Callable[[T], Awaitable[Any]] | None,
        max_idle: float | None,
        max_lifetime: float | None,
        discard_on: tuple[type[BaseException], ...],
        rng: random.Random,
    ) -> None:
        self._broker = broker
        self._regulator = regulator
        self._connect = connect
        self._close = close
        self._check = check
        self._max_idle = math.inf if max_idle is None else max_idle
        self._max_lifetime = math.inf if max_lifetime is None else max_lifetime
        self._discard_on = discard_on
        self._rng = rng
        self._in_use = 0
        self._connects = 0
        self._connect_failures = 0
        self._discarded = 0
        self._closing = False

    @asynccontextmanager
    async def checkout(self) -> AsyncIterator[T]:
        """Borrow a connection for the block; it goes back to the pool on exit.

        Waits in the pool's queue for an idle connection; raises
        :class:`~sbroker.Dropped` if the queue drops the request (the pool is
        overloaded or cannot connect). If the block raises one of the pool's
        ``discard_on`` exceptions (also inside an ``ExceptionGroup``), the
        connection is closed and replaced. A task cancelled while waiting takes
        no connection; one cancelled inside the block gives it back.
        """
        result = await self._broker.ask()
        if isinstance(result, Drop):
            raise Dropped(result)
        lease: _Lease[T] = result.value
        self._in_use += 1
        try:
            yield lease.conn
        except BaseException as error:
            lease.give_back(error)
            raise
        finally:
            self._in_use -= 1
        lease.give_back(None)

    def size(self) -> int:
        """Connections open or opening (the permits held in the regulator)."""
        return self._regulator.size()

    def statistics(self) -> PoolStatistics:
        """A snapshot: size, idle, in use, waiting clients, checkout totals and waits."""
        clients = self._broker.statistics().ask
        size, idle = self._regulator.size(), self._broker.len_r()
        return PoolStatistics(
            size=size,
            idle=idle,
            in_use=self._in_use,
            opening=size - idle - self._in_use,
            waiting=clients.waiting,
            go=clients.go,
            drop=clients.drop,
            checkout_p50=clients.sojourn_p50,
            checkout_p90=clients.sojourn_p90,
            checkout_p99=clients.sojourn_p99,
            connects=self._connects,
            connect_failures=self._connect_failures,
            discarded=self._discarded,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"<Pool size={stats.size} idle={stats.idle} in_use={stats.in_use}>"

    # -- the holders ---------------------------------------------------------------

    async def _spawn(
        self,
        nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ask the regulator for permits forever; each grant starts a holder.

        The permits the valve grants at once (``min_size``) are taken before
        ``started``, so the pool's size counts them as soon as it opens.
        """
        while isinstance(result := self._regulator.nb_ask(), Go):
            nursery.start_soon(self._hold, result.ref)
        task_status.started()
        while True:
            result = await self._regulator.ask()
            if isinstance(result, Go):
                nursery.start_soon(self._hold, result.ref)

    async def _hold(self, permit: Any) -> None:
        """One holder: open a connection, lend it out, replace it, until told to stop."""
        held = True
        try:
            while held and not self._closing:
                conn = await self._open()
                try:
                    held = await self._lend(conn, permit)
                finally:
                    await self._close_quietly(conn)
        finally:
            if held:
                with contextlib.suppress(BrokerClosed):
                    self._regulator.done(permit)

    async def _open(self) -> T:
        """Connect, backing off with jitter after failures (clients never see them)."""
        delay = BACKOFF_FIRST
        while True:
            try:
                conn = await self._connect()
            except Exception as error:
                self._connect_failures += 1
                logger.warning("pool: connect failed (%r); retrying", error)
            else:
                self._connects += 1
                return conn
            await trio.sleep(delay * self._rng.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _lend(self, conn: T, permit: Any) -> bool:
        """Offer ``conn`` until it must close; ``False`` if the permit was released."""
        born = trio.current_time()
        idle_since = born
        while not self._closing:  # the broker closes right after this is set
            lease = _Lease(conn)
            expires = min(idle_since + self._max_idle, born + self._max_lifetime)
            pending = self._broker.async_ask_r(lease)
            try:
                outcome = await self._wait_idle(pending, permit, expires)
            finally:
                if pending.result is None:  # not matched: leave the queue
                    with contextlib.suppress(BrokerClosed):
                        pending.cancel()
            if outcome != "lent":
                return outcome != "released"
            if not await self._returned_healthy(lease):
                return True
            idle_since = trio.current_time()
            if idle_since >= born + self._max_lifetime:
                return True
        return True

    async def _wait_idle(
        self, pending: Pending, permit: Any, expires: float
    ) -> Literal["lent", "closing", "released", "expired"]:
        """Wait in the ask_r queue for a client: ``"lent"``, ``"closing"``,
        ``"released"`` (the regulator answered ``Stop``) or ``"expired"``.

        Every ``IDLE_CHECK`` seconds the holder asks the regulator whether the
        pool may keep it, without leaving the queue: its place, and so the
        relative time the valve sees, is kept.
        """
        while True:
            with trio.move_on_at(min(trio.current_time() + IDLE_CHECK, expires)):
                await pending.wait()
            if isinstance(pending.result, Go):
                return "lent"
            if pending.result is not None:  # Drop: the broker closed
                return "closing"
            if not isinstance(self._regulator.continue_(permit), Go):
                return "released"  # Stop: permit released (NotFound: never held)
            if trio.current_time() >= expires:
                return "expired"

    async def _returned_healthy(self, lease: _Lease[T]) -> bool:
        """Wait for the client to give the connection back; may it be offered again?"""
        await lease.returned.wait()
        if _discards(lease.error, self._discard_on):
            self._discarded += 1
            return False
        if self._check is None:
            return True
        try:
            healthy = bool(await self._check(lease.conn))
        except Exception:
            logger.warning("pool: check(conn) raised; discarding the connection", exc_info=True)
            healthy = False
        if not healthy:
            self._discarded += 1
        return healthy

    async def _close_quietly(self, conn: T) -> None:
        """``close(conn)``, also while cancelled (bounded by ``CLOSE_TIMEOUT``); errors logged."""
        if self._close is None:
            return
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            try:
                await self._close(conn)
            except Exception:
                logger.warning("pool: close(conn) raised", exc_info=True)


@asynccontextmanager
async def open_pool(
    connect: Callable[[], Awaitable[T]],
    close: Callable[[T], Awaitable[Any]] | None = None,
    *,
    queue: QueuePolicy | None = None,
    valve: Valve | None = None,
    min_size: int = 1,
    max_size: int = 10,
    check: Callable[[T], Awaitable[Any]] | None = None,
    max_idle: float | None = None,
    max_lifetime: float | None = None,
    discard_on: type[BaseException] | Iterable[type[BaseException]] = (OSError,),
    rng: random.Random | None = None,
) -> AsyncIterator[Pool[T]]:
    """Run a connection pool for the block; every connection is closed on exit.

    Args:
        connect: ``await connect()`` opens a connection. Failures are logged
            and retried with jittered exponential back-off.
        close: ``await close(conn)`` closes one (``None``: nothing to do).
        queue: the policy of clients waiting for a connection (default
            ``AdaptiveQueue()``: up to 5 s, 100 ms once congested).
        valve: sizes the pool from the broker's relative time (default
            ``RelativeValve(target=0)``: grow by one connection per update
            while clients wait); its ``min_size``/``max_size`` are set to the pool's.
        min_size, max_size: bounds of the pool's size (connections open or
            opening).
        check: ``await check(conn)`` runs when a connection comes back from a
            checkout; a false result or an exception closes and replaces it.
        max_idle: seconds a connection may sit idle before it is replaced.
        max_lifetime: seconds after which a connection is replaced (when idle
            or when it comes back).
        discard_on: exception classes that, raised in a checkout block (also
            inside an ``ExceptionGroup``), mark its connection broken.
        rng: random source of the back-off and the meter's jitter.

    Returns at once: connections open in the background, so an outage at
    start-up never hangs it. Invalid arguments raise ``TypeError`` or
    ``ValueError`` naming the parameter.
    """
    _check_callable("connect", connect)
    _check_callable("close", close, allow_none=True)
    _check_callable("check", check, allow_none=True)
    queue = validate_policy("queue", AdaptiveQueue() if queue is None else queue)
    check_count("min_size", min_size)
    check_count("max_size", max_size)
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    check_bounds("min_size", min_size, "max_size", max_size)
    valve = _pool_valve(RelativeValve(target=0) if valve is None else valve, min_size, max_size)
    check_duration("max_idle", max_idle, allow_none=True, positive=True)
    check_duration("max_lifetime", max_lifetime, allow_none=True, positive=True)
    kinds = _check_discard_on(discard_on)
    if rng is not None and not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {rng!r}")
    rng = random.Random() if rng is None else rng

    # The spawner's ask waits until the valve opens.
    regulator = Regulator(queue=TimeoutQueue(timeout=None), valve=valve)
    broker = Broker(
        ask=queue,
        ask_r=TimeoutQueue(timeout=None, out="lifo"),  # the busiest connections stay busy
        meters=[UpdateMeter([(regulator, "ask_r", UPDATE_EVERY)], rng=rng)],
    )
    pool = Pool(broker, regulator, connect, close, check, max_idle, max_lifetime, kinds, rng)
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(regulator.run)
        await nursery.start(broker.run)
        await nursery.start(pool._spawn, nursery)
        try:
            yield pool
        except BaseException as exc:  # re-raised below, outside the nursery: not grouped
            error = exc
        finally:
            pool._closing = True
            broker.close()  # waiting clients are dropped; holders stop offering
            nursery.cancel_scope.cancel()  # holders close their connections, shielded
    regulator.close()
    if error is not None:
        raise error
