"""Every method of protocol.md section 3 over a real socket, through the spec-only client."""

from __future__ import annotations

import pytest
import trio
from msgpack_rpc_client import RpcClient, RpcError
from service_harness import CONFIG, TIMEOUT, serving, tmp_socket, wait_until


async def expect_error(client: RpcClient, code: str, method: str, *params: object) -> str:
    with pytest.raises(RpcError) as info:
        await client.call(method, *params)
    assert info.value.code == code, info.value
    return info.value.message


async def test_hello_and_names() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            hello = await client.call("hello", 1, {})
            assert hello["protocol"] == 1
            assert hello["server"].startswith("sbroker ")
            assert isinstance(hello["node"], str) and hello["node"]
            assert (hello["brokers"], hello["regulators"]) == (["db"], ["pool"])
            assert await client.call("hello", 1) == hello  # opts may be omitted
            await expect_error(client, "unsupported_version", "hello", 2, {})  # S5
            await expect_error(client, "bad_request", "hello", "1", {})
            assert await client.call("names") == {"brokers": ["db"], "regulators": ["pool"]}


async def test_ask_and_ask_r_match_with_values_as_sent() -> None:
    # S4, section 2: values come back exactly as sent, bin as bin, str as str
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as asker, await served.connect() as worker:
                value = {"query": b"\x00\xff", "n": [1, 2.5, None, True]}
                waiting = await asker.start("ask", "db", value)
                assert await worker.call("len", "db") == 1
                kind, ref, got, relative, sojourn = await worker.call("ask_r", "db", "conn-1")
                assert (kind, got) == ("go", value)
                assert relative <= 0 and sojourn == 0
                kind, ref2, got, relative, sojourn = await asker.result(waiting)
                assert (kind, ref2, got) == ("go", ref, "conn-1")
                assert relative >= 0 and sojourn >= relative
                assert isinstance(ref, (int, str))
                assert await worker.call("len", "db") == 0


async def test_nb_and_dynamic_asks() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                assert await one.call("nb_ask", "db", 1) == ["drop", 0]
                assert await one.call("nb_ask_r", "db") == ["drop", 0]
                waiting = await one.start("dynamic_ask_r", "db", "w")
                await wait_until(lambda: served.service.hosts.get("db").len_r() == 1)  # type: ignore[union-attr]
                assert (await two.call("nb_ask", "db", "v"))[:3][::2] == ["go", "w"]
                assert (await one.result(waiting))[2] == "v"
                waiting = await two.start("ask_r", "db", "w2")
                assert (await one.call("dynamic_ask", "db", "v2"))[2] == "w2"  # immediate Go
                assert (await two.result(waiting))[2] == "v2"


async def test_cancel_by_tag_is_per_connection_and_typed() -> None:
    # section 3: tags belong to the connection; 1, 1.0 and true are three tags
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                tagged = [
                    await one.start("ask", "db", None, {"tag": tag}) for tag in (1, 1.0, True)
                ]
                other = await two.start("ask", "db", None, {"tag": 1})
                untagged = await one.start("ask", "db")
                assert await one.call("len", "db") == 5
                assert await one.call("cancel", "db", 1) == 1
                assert (await one.response(tagged[0]))[0][0] == "cancelled"
                assert await one.call("cancel", "db", 1) == 0
                assert await one.call("cancel", "db", 1.0) == 1
                assert (await one.response(tagged[1]))[0][0] == "cancelled"
                assert await one.call("cancel", "db", True) == 1
                assert (await one.response(tagged[2]))[0][0] == "cancelled"
                assert await two.call("len", "db") == 2  # the other connection's and the untagged
                assert await two.call("cancel", "db", 1) == 1
                assert (await two.response(other))[0][0] == "cancelled"
                assert untagged not in one.responses
                await two.call("ask_r", "db")
                assert (await one.result(untagged))[0] == "go"


async def test_regulator_permits() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served:
            async with await served.connect() as one, await served.connect() as two:
                kind, ref, name, _relative, sojourn = await one.call("ask", "pool", "job")
                assert (kind, name, sojourn) == ("go", "pool", 0)
                assert await one.call("size", "pool") == 1
                waiting = await two.start("ask", "pool")
                assert await one.call("len", "pool") == 1
                assert (await one.call("continue", "pool", ref))[:3] == ["go", ref, "pool"]
                assert await two.call("done", "pool", ref) is False  # not that connection's permit
                assert await one.call("done", "pool", ref) is True
                kind, ref2, name, _relative, _sojourn = await two.result(waiting)
                assert (kind, name) == ("go", "pool") and ref2 != ref
                assert await one.call("done", "pool", ref) is False
                assert (await one.call("continue", "pool", ref))[0] == "not_found"
                assert await two.call("update", "pool", 1000) is None
                await expect_error(two, "bad_request", "update", "pool", 1.5)
                await expect_error(two, "bad_request", "continue", "pool", [1])
                assert await two.call("nb_ask", "pool") == ["drop", 0]  # max_size 1
                # a valve that stops the permit: max_size 0
                await two.call("change_config", "pool", {"valve": {"valve": "open", "max_size": 0}})
                assert (await two.call("continue", "pool", ref2))[0] == "stop"
                assert await two.call("size", "pool") == 0


async def test_statistics_config_change_config_estimate() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            statistics = await client.call("statistics", "db")
            assert statistics["ask"] == {
                "waiting": 0,
                "go": 0,
                "drop": 0,
                "sojourn_p50": None,
                "sojourn_p90": None,
                "sojourn_p99": None,
            }
            assert statistics["alarms"] == [] and statistics["scheduling_lag"] >= 0
            regulator_statistics = await client.call("statistics", "pool")
            assert regulator_statistics["size"] == 0 and regulator_statistics["alarms"] == []
            assert regulator_statistics["ask"] == statistics["ask"]  # nothing asked yet
            config = await client.call("config", "db")
            assert config["ask"]["timeout"] is None  # section 5: infinity read back as nil
            assert config["meters"] == []
            waiting = await client.start("ask", "db", "kept")
            new_ask = {"policy": "codel", "target": 0.05, "interval": 0.5}
            assert await client.call("change_config", "db", {"ask": new_ask}) is None
            config = await client.call("config", "db")
            assert config["ask"]["policy"] == "codel" and config["ask_r"]["timeout"] is None
            message = await expect_error(
                client, "invalid_config", "change_config", "db", {"ask": {"policy": "drop", "x": 1}}
            )
            assert "ask.x" in message
            assert (await client.call("config", "db"))["ask"]["policy"] == "codel"
            assert await client.call("len", "db") == 1  # nothing queued lost (api.md rule 3)
            assert await client.call("cancel", "db", None) == 0  # nil is a tag like any other
            assert await client.call("estimate", "db") == [None, None]
            assert await client.call("estimate", "pool") == [None, None]
            assert (await client.call("nb_ask_r", "db"))[2] == "kept"
            assert (await client.result(waiting))[0] == "go"


async def test_change_config_update_meter_names_a_regulator() -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            meters = [{"meter": "update", "targets": [["pool", "ask_r", 0.2]]}]
            await client.call("change_config", "db", {"meters": meters})
            assert (await client.call("config", "db"))["meters"] == meters
            message = await expect_error(
                client,
                "invalid_config",
                "change_config",
                "db",
                {"meters": [{"meter": "update", "targets": [["db", "ask"]]}]},
            )
            assert "no regulator named 'db'" in message


async def test_request_errors() -> None:
    # section 4
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            await expect_error(client, "unknown_method", "fly", "db")
            await expect_error(client, "unknown_name", "ask", "nope")
            await expect_error(client, "unknown_name", "ask_r", "pool")  # wrong kind
            await expect_error(client, "unknown_name", "size", "db")
            await expect_error(client, "bad_request", "len")
            await expect_error(client, "bad_request", "len", "db", 1)
            await expect_error(client, "bad_request", "len", 7)
            await expect_error(client, "bad_request", "ask", "db", 1, "opts")
            await expect_error(client, "bad_request", "names", 1)
            await expect_error(client, "bad_request", "monitor", "db", {"a": 1})
            assert await client.call("len", "db") == 0  # nothing was queued


async def test_unix_socket(tmp_path: object) -> None:
    # S1
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, unix_path=tmp_socket(tmp_path)) as served:
            async with await served.connect() as one, await served.connect() as two:
                waiting = await one.start("ask_r", "db", "w")
                assert (await two.call("ask", "db", "v"))[2] == "w"
                assert (await one.result(waiting))[2] == "v"


async def test_estimate_reads_the_hosts_published_estimates() -> None:
    # regulation.md B2 via protocol `estimate`: whatever the host publishes, else nil
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG) as served, await served.connect() as client:
            db = served.service.hosts.get("db")
            published = {"ask": 5_000_000, "ask_r": None}
            db.estimate = published.__getitem__  # type: ignore[union-attr]
            assert await client.call("estimate", "db") == [5_000_000, None]


async def test_a_value_a_fair_queue_cannot_key_is_refused_and_leaves_nothing() -> None:
    # S12: bad_request, and nothing of the request stays in the broker
    config = '[brokers.fair]\nask = { policy = "fair", queue = { policy = "timeout" } }\n'
    with trio.fail_after(TIMEOUT):
        async with serving(config) as served, await served.connect() as client:
            for _ in range(3):
                message = await expect_error(client, "bad_request", "ask", "fair", {"a": 1})
                assert "unhashable" in message
            broker = served.service.hosts.get("fair")
            assert broker is not None and broker.len() == 0
            assert broker._pending._by_tag == {}  # type: ignore[union-attr]
