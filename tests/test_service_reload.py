"""reload (protocol.md section 7): changed, added, removed and failed names; nothing queued lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from msgpack_rpc_client import RpcError
from service_harness import TIMEOUT, serving

from sbroker.service.config import ConfigError, load_config
from sbroker.service.server import Service

BEFORE = """
[brokers.db]
ask = { policy = "timeout", timeout = inf }

[brokers.cache]

[regulators.pool]
queue = { policy = "timeout", timeout = inf }
valve = { valve = "open", max_size = 1 }
"""

AFTER = """
[server]
max_in_flight = 500

[brokers.db]
ask = { policy = "codel", target = 0.5, interval = 10 }
meters = [ { meter = "update", targets = [ ["limits", "ask_r"] ] } ]

[brokers.cache]

[brokers.pool]

[regulators.limits]
valve = { valve = "rate", limit = 10 }

[brokers.jobs]
ask = { policy = "drop", max_len = -1 }
"""


async def test_reload_reports_and_keeps_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "sbroker.toml"
    path.write_text(BEFORE)
    with trio.fail_after(TIMEOUT):
        async with serving(load_config(str(path))) as served:
            async with await served.connect() as client, await served.connect() as holder:
                queued = [await client.start("ask", "db", n) for n in range(3)]
                _, permit, *_ = await holder.call("ask", "pool")
                pool_ask = await client.start("ask", "pool")
                assert await client.call("len", "db") == 3
                path.write_text(AFTER)
                report = await client.call("reload")
                assert report["changed"] == ["db"]
                assert report["added"] == ["limits", "pool"]  # pool: regulator -> broker
                assert report["removed"] == ["pool"]
                assert list(report["failed"]) == ["jobs"]
                assert str(path) in report["failed"]["jobs"]
                assert "[brokers.jobs] ask: max_len" in report["failed"]["jobs"]
                assert report["server"].startswith("changed")
                # db changed class with its requests kept (api.md rule 3)
                assert await client.call("len", "db") == 3
                config = await client.call("config", "db")
                assert config["ask"]["policy"] == "codel"
                assert config["meters"][0]["targets"] == [["limits", "ask_r", 0.1]]
                # the removed regulator's queued ask was answered Drop, its holder's permit
                # went with it
                assert (await client.result(pool_ask))[0] == "drop"
                with pytest.raises(RpcError) as info:
                    await holder.call("done", "pool", permit)
                assert info.value.code == "unknown_name"  # pool is a broker now
                assert await client.call("names") == {
                    "brokers": ["cache", "db", "pool"],
                    "regulators": ["limits"],
                }
                await client.call("nb_ask_r", "db")
                assert (await client.result(queued[0]))[0] == "go"
                # a second reload of the same file changes nothing more
                report = await client.call("reload")
                assert (report["changed"], report["added"], report["removed"]) == ([], [], [])
                assert list(report["failed"]) == ["jobs"]


async def test_failed_reload_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sbroker.toml"
    path.write_text(BEFORE)
    with trio.fail_after(TIMEOUT):
        async with serving(load_config(str(path))) as served, await served.connect() as client:
            waiting = await client.start("ask", "db")
            for text in ("[server]\nmax_in_flight = 0\n", "[brokers.db\n", "[bogus]\n"):
                path.write_text(text)
                with pytest.raises(RpcError) as info:
                    await client.call("reload")
                assert info.value.code == "invalid_config"
                assert str(path) in info.value.message
            path.unlink()
            with pytest.raises(RpcError) as info:
                await client.call("reload")
            assert "cannot read" in info.value.message
            assert await client.call("len", "db") == 1
            assert (await client.call("config", "db"))["ask"]["timeout"] is None
            assert waiting not in client.responses


async def test_a_failed_regulator_fails_the_hosts_that_name_it(tmp_path: Path) -> None:
    path = tmp_path / "sbroker.toml"
    path.write_text(BEFORE)
    with trio.fail_after(TIMEOUT):
        async with serving(load_config(str(path))) as served, await served.connect() as client:
            path.write_text(
                BEFORE
                + '[regulators.bad]\nvalve = { valve = "rate", limit = -1 }\n'
                + '[brokers.uses]\nmeters = [ { meter = "update", targets = [["bad", "ask"]] } ]\n'
            )
            report = await client.call("reload")
            assert sorted(report["failed"]) == ["bad", "uses"]
            assert "regulator 'bad' failed" in report["failed"]["uses"]
            assert report["added"] == [] and report["server"] == "unchanged"


async def test_kind_change_that_fails_keeps_the_old_host(tmp_path: Path) -> None:
    path = tmp_path / "sbroker.toml"
    path.write_text(BEFORE)
    with trio.fail_after(TIMEOUT):
        async with serving(load_config(str(path))) as served, await served.connect() as client:
            waiting = await client.start("ask", "db")
            path.write_text(
                BEFORE.replace("[brokers.db]\n", "[regulators.db]\n").replace(
                    'ask = { policy = "timeout", timeout = inf }', 'valve = { valve = "x" }'
                )
            )
            report = await client.call("reload")
            assert list(report["failed"]) == ["db"] and report["removed"] == []
            assert await client.call("len", "db") == 1 and waiting not in client.responses


async def test_invalid_file_at_start_names_file_table_parameter(tmp_path: Path) -> None:
    # section 7: the server refuses to start
    path = tmp_path / "bad.toml"
    path.write_text('[regulators.pool]\nvalve = { valve = "relative", min_size = "2" }\n')
    with pytest.raises(ConfigError, match=r"bad.toml \[regulators.pool\] valve: min_size"):
        Service(load_config(str(path)))
