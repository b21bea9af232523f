"""The Python client against a real server on 127.0.0.1: every broker call (issue 10 item 4)."""

from __future__ import annotations

import client_harness
import pytest
import trio
from client_harness import TIMEOUT, Server, served

import sbroker
from sbroker import BrokerStatistics, Drop, Go, RequestCancelled
from sbroker.client import Connection, InvalidConfig, RemoteError
from sbroker.queues import CodelQueue, DropQueue, TimeoutQueue

server = client_harness.server


async def waiting(conn: Connection, name: str, side: str, count: int) -> None:
    """Poll until ``count`` requests wait on ``side`` (``len`` or ``len_r``)."""
    broker = conn.broker(name)
    while await getattr(broker, side)() != count:
        await trio.sleep(0.005)


async def test_ask_matches_ask_r_across_connections(server: Server) -> None:
    async with served(server) as worker_conn, served(server) as client_conn:
        worker, client = worker_conn.broker("default"), client_conn.broker("default")
        async with trio.open_nursery() as nursery:
            results: list[object] = []

            async def work() -> None:
                results.append(await worker.ask_r("worker-1"))

            nursery.start_soon(work)
            await waiting(client_conn, "default", "len_r", 1)
            go = await client.ask({"job": b"\x00bin", "n": [1, 2.5]})
        (worker_go,) = results
        assert isinstance(go, Go) and isinstance(worker_go, Go)
        assert go.value == "worker-1"  # S4: values come back as sent, bin as bin
        assert worker_go.value == {"job": b"\x00bin", "n": [1, 2.5]}
        assert go.ref == worker_go.ref  # both sides of a match: equal refs
        assert go.relative_time < 0 < worker_go.relative_time  # the worker had waited
        assert go.sojourn_time >= 0 and worker_go.sojourn_time > 0


async def test_nb_calls_never_wait(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        assert await broker.nb_ask("x") == Drop(0)
        assert await broker.nb_ask_r("y") == Drop(0)
        pending = await broker.async_ask("queued")
        await waiting(conn, "default", "len", 1)
        go = await broker.nb_ask_r("served")
        assert isinstance(go, Go) and go.value == "queued"
        result = await pending.wait()
        assert isinstance(result, Go) and result.ref == go.ref and result.value == "served"
        assert await broker.len() == 0


async def test_async_ask_pending_tag_result_and_cancel(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        first = await broker.async_ask("a", tag="batch")
        second = await broker.async_ask_r("b")
        assert first.tag == "batch" and isinstance(second.tag, str) and second.tag != first.tag
        assert isinstance(await first.wait(), Go) and isinstance(first.result, Go)
        assert isinstance(await second.wait(), Go) and second.result is not None
        assert await first.cancel() is False  # answered already
        third = await broker.async_ask("c")
        await waiting(conn, "default", "len", 1)
        assert third.result is None
        assert await third.cancel() is True  # S6: withdrawn, answered `cancelled`
        assert third.cancelled and third.result is None
        with pytest.raises(RequestCancelled):
            await third.wait()
        assert await broker.len() == 0


async def test_cancel_by_tag_removes_only_this_connections_requests(server: Server) -> None:
    async with served(server) as conn, served(server) as other_conn:
        broker, other = conn.broker("default"), other_conn.broker("default")
        mine = [await broker.async_ask(i, tag="t") for i in range(3)]
        theirs = await other.async_ask("theirs", tag="t")
        await waiting(conn, "default", "len", 4)
        assert await broker.cancel("t") == 3
        for pending in mine:
            with pytest.raises(RequestCancelled):
                await pending.wait()
        assert await broker.len() == 1 and theirs.result is None
        assert await other.cancel("t") == 1 and await broker.cancel("nothing") == 0


async def test_dynamic_ask_returns_a_pending_with_the_final_result(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        worker = await broker.dynamic_ask_r("w")
        await waiting(conn, "default", "len_r", 1)
        client = await broker.dynamic_ask("c", tag=("tuple", "tag"))
        assert isinstance(await client.wait(), Go) and isinstance(await worker.wait(), Go)
        assert client.tag == ("tuple", "tag")


async def test_statistics_config_and_change_config(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        for _ in range(2):
            await broker.async_ask_r("w")
            await waiting(conn, "default", "len_r", 1)
            assert isinstance(await broker.ask("c"), Go)
        await broker.nb_ask("refused")
        stats = await broker.statistics()
        assert isinstance(stats, BrokerStatistics)
        assert stats.ask.go == 2 and stats.ask.drop == 1 and stats.ask_r.waiting == 0
        assert stats.ask.sojourn_p50 is not None and stats.ask_r.sojourn_p99 is not None
        ask, ask_r, meters = await broker.config()
        assert ask == TimeoutQueue(timeout=None) and ask_r == TimeoutQueue(timeout=None)
        assert meters == ()
        await broker.change_config(ask=CodelQueue(target=0.05, interval=0.5))
        assert (await broker.config())[:2] == (CodelQueue(target=0.05, interval=0.5), ask_r)
        await broker.change_config(meters=[sbroker.OverloadMeter(target=0.2)])
        assert (await broker.config())[2] == (sbroker.OverloadMeter(target=0.2),)


async def test_change_config_keeps_queued_requests(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        pendings = [await broker.async_ask(i) for i in range(3)]
        await waiting(conn, "default", "len", 3)
        await broker.change_config(ask=DropQueue(out="lifo"))  # another class: handed over
        assert await broker.len() == 3
        go = await broker.nb_ask_r()
        assert isinstance(go, Go) and go.value == 2  # lifo now
        assert [p.result for p in pendings[:2]] == [None, None]


async def test_rejected_change_config_is_invalid_config_and_a_value_error(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        with pytest.raises(ValueError, match="target"):
            await conn.call("change_config", "default", {"ask": {"policy": "codel", "target": -1}})
        with pytest.raises(InvalidConfig):
            await conn.call("change_config", "default", {"ask": {"policy": "sideways"}})
        assert (await broker.config())[0] == TimeoutQueue(timeout=None)


async def test_estimate_without_a_better_meter(server: Server) -> None:
    async with served(server) as conn:
        assert await conn.broker("default").estimate() == (None, None)


async def test_unknown_names_and_methods_are_remote_errors(server: Server) -> None:
    async with served(server) as conn:
        with pytest.raises(RemoteError) as caught:
            await conn.broker("nope").len()
        assert caught.value.code == "unknown_name" and "nope" in caught.value.message
        with pytest.raises(RemoteError) as caught:
            await conn.broker("pool").ask_r()  # a regulator, not a broker
        assert caught.value.code == "unknown_name"
        with pytest.raises(RemoteError) as caught:
            await conn.call("no_such_method")
        assert caught.value.code == "unknown_method"


async def test_names_hello_and_reload(server: Server) -> None:
    async with served(server) as conn:
        names = await conn.names()
        assert "default" in names["brokers"] and "pool" in names["regulators"]
        hello = await conn.hello()
        assert hello["protocol"] == 1 and conn.server_info == hello
        report = await conn.reload()
        assert set(report) >= {"changed", "added", "removed", "failed"}


async def test_many_calls_in_flight_on_one_connection(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(broker.ask_r, i)
                await waiting(conn, "default", "len_r", 50)
                values = sorted([(await broker.ask()).value for _ in range(50)])  # type: ignore[union-attr]
        assert values == list(range(50))


async def test_monitor_tells_when_the_counterparty_goes_away(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        async with served(server) as worker_conn:
            pending = await worker_conn.broker("default").async_ask_r("worker")
            await waiting(conn, "default", "len_r", 1)
            go = await broker.ask("client")
            assert isinstance(go, Go) and isinstance(await pending.wait(), Go)
            monitor = await broker.monitor(go.ref)  # S9
            assert monitor.reason is None
        with trio.fail_after(TIMEOUT):
            assert await monitor.wait() == "closed"  # the worker's connection closed
        unknown = await broker.monitor(123456789)
        with trio.fail_after(TIMEOUT):
            assert await unknown.wait() == "noproc"


async def test_monitors_report_noconnection_when_the_own_connection_is_lost(
    server: Server,
) -> None:
    async with served(server) as conn, served(server) as worker_conn:
        await worker_conn.broker("default").async_ask_r("worker")
        await waiting(conn, "default", "len_r", 1)
        go = await conn.broker("default").ask()
        assert isinstance(go, Go)
        monitor = await conn.broker("default").monitor(go.ref)
        await conn.aclose()
        assert monitor.reason == "noconnection"


async def test_monitor_a_permit(server: Server) -> None:
    async with served(server) as conn:
        pool = conn.regulator("pool")
        go = await pool.ask()
        assert isinstance(go, Go)
        monitor = await pool.monitor(go.ref)
        assert await pool.done(go.ref) is True
        with trio.fail_after(TIMEOUT):
            assert await monitor.wait() == "done"
