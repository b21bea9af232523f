"""sbroker.open_pool: a connection pool on a broker and a regulator, with a fake server.

Every test runs on MockClock (autojump). The pool sizes itself by the
broker's ask_r relative time fed to a RelativeValve (regulation.md M19, V7);
holders release their permits on every exit path (R13).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import sbroker
from sbroker import Dropped, open_pool
from sbroker.queues import AdaptiveQueue, TimeoutQueue
from sbroker.regulator import OpenValve, RelativeValve


class Conn:
    """A fake connection: a number, and whether the server has closed it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.healthy = True

    def __repr__(self) -> str:
        return f"<Conn {self.number}>"


class FakeServer:
    """Hands out connections after ``connect_time``; refuses while ``up`` is False."""

    def __init__(self, connect_time: float = 0.01) -> None:
        self.connect_time = connect_time
        self.up = True
        self.numbers = itertools.count(1)
        self.open: set[Conn] = set()
        self.opened = 0
        self.refused = 0

    async def connect(self) -> Conn:
        await trio.sleep(self.connect_time)
        if not self.up:
            self.refused += 1
            raise ConnectionRefusedError("server down")
        conn = Conn(next(self.numbers))
        self.open.add(conn)
        self.opened += 1
        return conn

    async def close(self, conn: Conn) -> None:
        await trio.sleep(0.001)
        assert not conn.closed, "closed twice"
        conn.closed = True
        self.open.discard(conn)


async def use(pool: sbroker.Pool[Conn], seconds: float = 0.0) -> Conn:
    async with pool.checkout() as conn:
        assert not conn.closed
        await trio.sleep(seconds)
        return conn


async def load(pool: sbroker.Pool[Conn], clients: int, each: float, until: float) -> list[int]:
    """``clients`` tasks checking out for ``each`` s until ``until``; return drops per task."""
    drops = [0] * clients

    async def client(i: int) -> None:
        while trio.current_time() < until:
            try:
                await use(pool, each)
            except Dropped:
                drops[i] += 1
                await trio.sleep(each)

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    return drops


def rng() -> random.Random:
    return random.Random(5)


async def test_open_returns_at_once_and_size_counts_opening_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(connect_time=10.0)
    start = trio.current_time()
    async with open_pool(server.connect, server.close, min_size=3, rng=rng()) as pool:
        assert trio.current_time() == start  # did not wait for a connection
        stats = pool.statistics()
        assert (stats.size, stats.opening, stats.idle, stats.in_use) == (3, 3, 0, 0)
        await trio.sleep(10.5)
        stats = pool.statistics()
        assert (stats.size, stats.idle, stats.connects) == (3, 3, 3)
    assert server.open == set()  # leaving the pool closed every connection


async def test_grows_under_load_and_shrinks_when_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    async with open_pool(server.connect, server.close, max_size=8, rng=rng()) as pool:
        assert pool.size() == 1
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, pool.size())
                assert pool.size() <= 8
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await load(pool, clients=20, each=0.02, until=trio.current_time() + 3)
            nursery.cancel_scope.cancel()
        assert peak == 8  # grew to max_size while clients waited (M19)
        assert len(server.open) == pool.size()
        await trio.sleep(5)  # idle holders ask continue_ and are told Stop
        assert pool.size() == 1  # back to min_size
        assert len(server.open) == 1
        stats = pool.statistics()
        assert stats.go > 1000 and stats.checkout_p50 is not None
    assert server.open == set()


async def test_broken_connection_is_closed_and_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    async with open_pool(server.connect, server.close, max_size=1, rng=rng()) as pool:
        first = await use(pool)
        with pytest.raises(ValueError):  # not in discard_on: the connection stays
            async with pool.checkout() as conn:
                raise ValueError("a bug in the block")
        assert conn is first
        with pytest.raises(ConnectionResetError):  # an OSError: broken, replaced
            async with pool.checkout() as conn:
                raise ConnectionResetError("peer reset")
        second = await use(pool)
        assert conn is first and first.closed
        assert second is not first and not second.closed
        with pytest.raises(ExceptionGroup):  # an OSError inside a group counts too
            async with pool.checkout() as conn, trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, 1)
                raise BrokenPipeError("inside a nursery")
        assert (await use(pool)).number == 3
        assert conn is second and second.closed
        assert pool.statistics().discarded == 2


async def test_check_failing_or_raising_replaces_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    checked: list[Conn] = []

    async def check(conn: Conn) -> bool:
        checked.append(conn)
        if conn.number == 2:
            raise RuntimeError("ping failed")
        return conn.healthy

    async with open_pool(server.connect, server.close, max_size=1, check=check) as pool:
        async with pool.checkout() as conn:
            conn.healthy = False
        assert (await use(pool)).number == 2  # check raises on number 2
        assert checked[0] is conn and conn.closed
        assert (await use(pool)).number == 3
        assert (await use(pool)).number == 3  # healthy: kept
        assert pool.statistics().discarded == 2


async def test_connect_outage_drops_clients_fast_and_the_pool_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    server.up = False
    async with open_pool(server.connect, server.close, max_size=4, rng=rng()) as pool:
        waits: list[float] = []

        async def client() -> None:
            start = trio.current_time()
            with pytest.raises(Dropped):
                await use(pool)
            waits.append(trio.current_time() - start)

        async with trio.open_nursery() as nursery:  # clients keep coming during the outage
            for _ in range(40):
                nursery.start_soon(client)
                await trio.sleep(0.1)
        assert len(waits) == 40  # nobody was stranded
        # AdaptiveQueue: a queue non-empty for 1 s (its interval) drops whoever has
        # waited 100 ms: nobody waits anywhere near its 5 s timeout.
        assert max(waits) <= 1.2
        # Up to 4 holders kept retrying for 4 s: about 7 tries each with a back-off
        # doubling from 50 ms to 2 s (each try 10 ms: 400 each without back-off).
        assert 4 < server.refused <= 40
        assert pool.statistics().connect_failures == server.refused
        server.up = True
        with trio.fail_after(5):  # back-off is capped: the pool recovers
            while True:
                try:
                    await use(pool)
                    break
                except Dropped:
                    await trio.sleep(0.1)
        assert pool.statistics().connects >= 1
    assert server.open == set()


async def test_cancellation_mid_checkout_leaks_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    queue = TimeoutQueue(timeout=None)
    async with open_pool(server.connect, server.close, queue=queue, max_size=1) as pool:
        async with pool.checkout() as held:
            with trio.move_on_after(0.5):  # cancelled while waiting in the queue (api rule 2)
                await use(pool)
            assert pool.statistics().waiting == 0
        with trio.move_on_after(0.5):  # cancelled inside the block: the connection goes back
            async with pool.checkout() as conn:
                await trio.sleep(1)
        assert conn is held and not conn.closed
        await trio.sleep(0.01)
        stats = pool.statistics()
        assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)
        assert await use(pool) is held

        # The pool is left while clients wait and one holds a connection.
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(use, pool, 10.0)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    assert server.open == set() and held.closed


async def test_discard_on_cancelled_closes_a_connection_cancelled_in_use(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    kinds = (OSError, trio.Cancelled)
    async with open_pool(server.connect, server.close, max_size=1, discard_on=kinds) as pool:
        with trio.move_on_after(0.5):
            async with pool.checkout() as conn:
                await trio.sleep(1)
        await trio.sleep(0.01)
        assert conn.closed and (await use(pool)) is not conn


async def test_max_idle_and_max_lifetime_replace_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    async with open_pool(server.connect, server.close, max_size=1, max_idle=2.0) as pool:
        first = await use(pool)
        await trio.sleep(1.5)
        assert await use(pool) is first  # idle 1.5 s < 2 s
        await trio.sleep(2.5)
        assert first.closed and (await use(pool)) is not first
    async with open_pool(server.connect, server.close, max_size=1, max_lifetime=1.0) as pool:
        first = await use(pool)
        used = {(await use(pool, 0.3)).number for _ in range(5)}  # busy past its lifetime
        assert first.number in used and first.closed
        assert len(used) == 2
        await trio.sleep(3)  # idle: replaced at every lifetime
        assert server.opened >= 1 + 2 + 2
    assert server.open == set()


async def test_an_error_leaving_the_pool_is_not_wrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    with pytest.raises(KeyError):
        async with open_pool(server.connect, server.close) as pool:
            await use(pool)
            raise KeyError("mine")
    assert server.open == set()
    with pytest.raises(sbroker.BrokerClosed):
        await use(pool)


async def test_close_errors_are_logged_and_a_pool_without_close_works(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer()

    async def bad_close(conn: Conn) -> None:
        raise OSError("already gone")

    async with open_pool(server.connect, bad_close) as pool:
        with pytest.raises(OSError):
            async with pool.checkout():
                raise OSError("broken")
        await use(pool)
    assert "close(conn) raised" in caplog.text
    async with open_pool(server.connect, valve=OpenValve(), max_size=2) as pool:
        await use(pool)
        assert pool.size() == 2  # an OpenValve opens every connection up to max_size


async def test_statistics_is_frozen_and_prints_a_summary(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    async with open_pool(server.connect, server.close, max_size=2) as pool:
        await use(pool, 0.01)
        assert pool.statistics().in_use == 0
        await trio.sleep(0.01)  # the holder takes its connection back and offers it again
        stats = pool.statistics()
    assert (stats.go, stats.drop, stats.connects) == (1, 0, 1)
    assert stats.checkout_p99 is not None and stats.checkout_p99 >= 10_000_000  # waited connect
    with pytest.raises(AttributeError):
        stats.size = 3  # type: ignore[misc]
    text = str(stats)
    assert "size 1: 1 idle, 0 in use" in text and "1 go, 0 drop" in text and "ms" in text


Connect = Callable[[], Awaitable[Conn]]


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(connect=None), TypeError, "connect"),
        (dict(close=5), TypeError, "close"),
        (dict(check="yes"), TypeError, "check"),
        (dict(queue=TimeoutQueue), TypeError, "queue"),
        (dict(valve=5), TypeError, "valve"),
        (dict(min_size=-1), ValueError, "min_size"),
        (dict(min_size=1.5), TypeError, "min_size"),
        (dict(max_size=0), ValueError, "max_size"),
        (dict(min_size=5, max_size=2), ValueError, "max_size"),
        (dict(max_idle=-1), ValueError, "max_idle"),
        (dict(max_lifetime=math.nan), ValueError, "max_lifetime"),
        (dict(discard_on="OSError"), TypeError, "discard_on"),
        (dict(discard_on=(OSError, 3)), TypeError, "discard_on"),
        (dict(rng=5), TypeError, "rng"),
    ],
)
async def test_invalid_arguments_name_the_parameter(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    server = FakeServer()
    arguments: dict[str, object] = {"connect": server.connect, **kwargs}
    with pytest.raises(error, match=name):
        async with open_pool(**arguments):  # type: ignore[arg-type]
            pass


async def test_defaults_and_custom_policies(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer()
    valve = RelativeValve(target=0.05, min_size=0, max_size=None)
    queue = AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0)
    async with open_pool(
        server.connect, queue=queue, valve=valve, min_size=2, max_size=3, discard_on=OSError
    ) as pool:
        assert pool.size() >= 2  # min_size, and one more for the first update (0 < 50 ms)
        await trio.sleep(3)
        assert pool.size() == 2
        assert "Pool size=2" in repr(pool)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_faults_leak_nothing_and_strand_nobody(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    # Clients that raise, get cancelled while waiting or inside the block, and a
    # server that goes down and up: every client finishes, the size stays within
    # its bounds, and every connection opened is closed exactly once.
    draw = random.Random(seed)
    server = FakeServer()
    finished = 0

    async def client(pool: sbroker.Pool[Conn]) -> None:
        nonlocal finished
        fault = draw.choice(["none", "none", "oserror", "valueerror", "cancel"])
        with trio.move_on_after(draw.uniform(0.01, 0.3) if fault == "cancel" else math.inf):
            try:
                async with pool.checkout() as conn:
                    assert not conn.closed
                    await trio.sleep(draw.uniform(0, 0.05))
                    if fault == "oserror":
                        raise ConnectionResetError
                    if fault == "valueerror":
                        raise ValueError
            except (Dropped, ConnectionResetError, ValueError):
                pass
        finished += 1

    outages_scope = trio.CancelScope()

    async def outages() -> None:
        with outages_scope:
            while True:
                await trio.sleep(draw.uniform(0.2, 1.0))
                server.up = not server.up

    with trio.fail_after(60):
        async with (
            open_pool(
                server.connect, server.close, min_size=1, max_size=5, rng=random.Random(seed)
            ) as pool,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(outages)
            async with trio.open_nursery() as clients:
                for _ in range(300):
                    clients.start_soon(client, pool)
                    assert 1 <= pool.size() <= 5
                    await trio.sleep(draw.expovariate(100))
            outages_scope.cancel()
            server.up = True
            await trio.sleep(3)  # longer than the longest back-off
            stats = pool.statistics()
            assert stats.in_use == stats.waiting == 0
            assert stats.idle == stats.size  # every connection came back to the pool
    assert finished == 300
    assert server.open == set()
    assert stats.connects == server.opened
