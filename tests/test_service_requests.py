"""Requests in flight: pipelining (S3), cancel_request (S6), disconnects (S7), final
matches (S8) and monitors (S9)."""

from __future__ import annotations

import trio
from msgpack_rpc_client import RpcClient
from service_harness import CONFIG, TIMEOUT, Served, serving, wait_until


def host_len(served: Served, name: str, method: str = "len") -> int:
    return getattr(served.service.hosts.get(name), method)()  # type: ignore[no-any-return]


async def test_pipelined_responses_in_completion_order() -> None:
    # S3: a long ask does not hold up a later len; msgid reuse is bad_request
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                await one.start("ask", "db", "v", msgid=7)
                await one.start("len", "db", msgid=8)
                message = await one.receive()
                assert message == [1, 8, None, 1]
                await one.start("len", "db", msgid=7)  # 7 is still in flight
                error, _ = await one.response(7)
                assert error[0] == "bad_request" and "in flight" in error[1]
                await two.call("ask_r", "db", "w")
                assert (await one.result(7))[2] == "w"  # the original 7, answered once
                await one.start("len", "db", msgid=7)  # reusable once answered
                assert await one.result(7) == 0


async def test_cancel_request() -> None:
    # S6
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                waiting = await one.start("ask", "db", "v")
                await one.notify("cancel_request", waiting)
                error, _ = await one.response(waiting)
                assert error[0] == "cancelled"
                assert await one.call("len", "db") == 0
                # unknown and finished msgids: nothing happens
                await one.notify("cancel_request", 12345)
                await one.notify("cancel_request", waiting)
                assert await one.call("len", "db") == 0
                # a Go made before the cancel arrived stands
                waiting = await one.start("ask", "db", "v2")
                await wait_until(lambda: host_len(served, "db") == 1)
                assert (await two.call("ask_r", "db", "w"))[2] == "v2"
                await one.notify("cancel_request", waiting)
                assert (await one.result(waiting))[2] == "w"
                # a regulator ask waiting for a permit
                assert (await one.call("ask", "pool"))[0] == "go"
                waiting = await two.start("ask", "pool")
                await wait_until(lambda: host_len(served, "pool") == 1)
                await two.notify("cancel_request", waiting)
                assert (await two.response(waiting))[0][0] == "cancelled"
                assert await two.call("len", "pool") == 0


async def test_disconnect_withdraws_requests_and_releases_permits() -> None:
    # S7
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as stays:
                leaving = await served.connect()
                for value in range(3):
                    await leaving.start("ask", "db", value, {"tag": "t"})
                await leaving.start("ask_r", "db")  # matches one of its own asks
                assert (await leaving.call("ask", "pool"))[0] == "go"
                permit_ask = await stays.start("ask", "pool")  # waits for leaving's permit
                assert await stays.call("len", "db") == 2
                await leaving.aclose()
                await wait_until(lambda: served.service.connections == 1)
                assert await stays.call("len", "db") == 0
                assert await stays.call("cancel", "db", "t") == 0
                kind, *_ = await stays.result(permit_ask)  # the permit was released to it
                assert kind == "go" and await stays.call("size", "pool") == 1
                # nothing of the closed connection is left anywhere
                assert await stays.call("nb_ask_r", "db") == ["drop", 0]


async def test_a_match_is_final_and_monitors_tell_when_the_counterparty_goes() -> None:
    # S8, S9
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as worker:
                asker = await served.connect()
                await asker.start("ask", "db", "job")
                await wait_until(lambda: host_len(served, "db") == 1)
                kind, ref, value, *_ = await worker.call("ask_r", "db", "conn")
                assert (kind, value) == ("go", "job")
                assert await worker.call("monitor", "db", ref) is None
                await asker.aclose()  # before reading its Go: the match stands (S8)
                assert await worker.notification() == ["db", ref, "closed"]
                # a monitor on an already closed counterparty: at once
                assert await worker.call("monitor", "db", ref) is None
                assert await worker.notification() == ["db", ref, "closed"]
                # a ref this connection never received
                assert await worker.call("monitor", "db", 999_999) is None
                assert await worker.notification() == ["db", 999_999, "noproc"]


async def test_monitor_live_counterparty_and_permits() -> None:
    # S9: "down" only once the counterparty goes; a permit's monitor says "done"
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                waiting = await one.start("ask_r", "db", "w")
                await wait_until(lambda: host_len(served, "db", "len_r") == 1)
                kind, ref, *_ = await two.call("ask", "db", "v")
                assert (await one.result(waiting))[1] == ref
                await one.call("monitor", "db", ref)
                await two.call("monitor", "db", ref)
                assert await one.call("len", "db") == 0 and one.notifications == []
                assert two.notifications == []
                _, permit, *_ = await one.call("ask", "pool")
                await one.call("monitor", "pool", permit)
                await one.call("monitor", "pool", permit + 1000)
                assert await one.notification() == ["pool", permit + 1000, "noproc"]
                assert await one.call("done", "pool", permit) is True
                assert await one.notification() == ["pool", permit, "done"]
                await two.aclose()
                assert await one.notification() == ["db", ref, "closed"]


async def test_server_stop_answers_queued_requests_drop() -> None:
    # S13 in process: every queued request is answered Drop, then the connection closes
    with trio.fail_after(TIMEOUT):
        client: RpcClient | None = None
        async with serving(CONFIG) as served:
            client = await served.connect()
            asks = [await client.start("ask", "db", n) for n in range(3)]
            await client.call("ask", "pool")
            permit_ask = await client.start("ask", "pool")
            assert await client.call("len", "db") == 3
        assert client is not None
        for msgid in [*asks, permit_ask]:
            assert (await client.result(msgid))[0] == "drop"
        await client.closed()
        await client.aclose()


async def test_monitor_remembers_the_latest_matches() -> None:
    # docs/protocol.md: the last min(1024, max_in_flight); older refs are noproc
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, max_in_flight=2) as served:
            async with await served.connect() as one, await served.connect() as two:
                refs = []
                for n in range(3):
                    waiting = await one.start("ask_r", "db", n)
                    await wait_until(lambda: host_len(served, "db", "len_r") == 1)
                    refs.append((await two.call("ask", "db"))[1])
                    await one.result(waiting)
                await two.call("monitor", "db", refs[0])
                assert await two.notification() == ["db", refs[0], "noproc"]
                await two.call("monitor", "db", refs[2])
                await one.aclose()
                assert await two.notification() == ["db", refs[2], "closed"]
