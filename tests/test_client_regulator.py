"""The Python client's remote regulator: permits, continue, done, update, permit() (issue 10)."""

from __future__ import annotations

import client_harness
import pytest
import trio
from client_harness import Server, served

import sbroker
from sbroker import Drop, Dropped, Go, NotFound, RequestCancelled, Stop
from sbroker.client import RemoteRegulator
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve, RelativeValve

server = client_harness.server


async def test_ask_done_size_and_len(server: Server) -> None:
    async with served(server) as conn:
        pool = conn.regulator("pool")  # OpenValve(max_size=2)
        first, second = await pool.ask("a"), await pool.nb_ask("b")
        assert isinstance(first, Go) and isinstance(second, Go)
        assert first.value is pool  # as in-process: a permit's value is its regulator
        assert first.ref != second.ref and await pool.size() == 2
        assert await pool.nb_ask("c") == Drop(0)  # full: never queues
        waiting = await pool.async_ask("d")
        while await pool.len() != 1:
            await trio.sleep(0.005)
        assert waiting.result is None
        assert await pool.done(first.ref) is True
        assert await pool.done(first.ref) is False  # released already
        granted = await waiting.wait()
        assert isinstance(granted, Go) and granted.value is pool and await pool.size() == 2
        for permit in (second, granted):
            assert await pool.done(permit.ref) is True
        assert await pool.size() == 0 and await pool.len() == 0


async def test_continue_stop_not_found_and_update(server: Server) -> None:
    async with served(server) as conn:
        pool = conn.regulator("pool")
        go = await pool.ask()
        assert isinstance(go, Go)
        again = await pool.continue_(go.ref)
        assert isinstance(again, Go) and again.ref == go.ref and again.value is pool
        assert isinstance(await pool.continue_(987654), NotFound)
        await pool.update(5_000_000)
        await pool.change_config(valve=OpenValve(max_size=0))  # above max_size: must stop
        assert isinstance(await pool.continue_(go.ref), Stop)
        assert await pool.size() == 0


async def test_permit_releases_on_exit_and_on_error(server: Server) -> None:
    async with served(server) as conn:
        pool = conn.regulator("pool")
        async with pool.permit("job") as go:
            assert isinstance(go, Go) and await pool.size() == 1
        assert await pool.size() == 0
        with pytest.raises(ZeroDivisionError):
            async with pool.permit():
                1 / 0  # noqa: B018
        assert await pool.size() == 0
        with trio.move_on_after(0.01):
            async with pool.permit():
                await trio.sleep_forever()  # cancelled inside the block: released, shielded
        assert await pool.size() == 0


async def test_permit_raises_dropped(server: Server) -> None:
    async with served(server) as conn:
        tight = conn.regulator("tight")  # one permit, DropQueue(max_len=0)
        async with tight.permit():
            with pytest.raises(Dropped) as caught:
                async with tight.permit():
                    pass  # pragma: no cover
            assert isinstance(caught.value.drop, Drop)
        assert await tight.size() == 0


async def test_statistics_config_change_config(server: Server) -> None:
    async with served(server) as conn:
        pool: RemoteRegulator = conn.regulator("pool")
        stats = await pool.statistics()
        assert stats["size"] == 0 and stats["ask"]["waiting"] == 0
        queue, valve, meters = await pool.config()
        assert queue == TimeoutQueue(timeout=None) and valve == OpenValve(max_size=2)
        assert meters == ()
        new_valve = RelativeValve(target=0.2, min_size=1, max_size=4)
        await pool.change_config(valve=new_valve, meters=[sbroker.OverloadMeter()])
        assert (await pool.config())[1:] == (new_valve, (sbroker.OverloadMeter(),))
        assert await pool.estimate() == (None, None)
        assert await pool.cancel("no such tag") == 0


async def test_dynamic_ask_and_cancel_by_tag(server: Server) -> None:
    async with served(server) as conn:
        pool = conn.regulator("pool")  # two permits
        granted = [await pool.dynamic_ask(i) for i in range(2)]
        for pending in granted:
            go = await pending.wait()
            assert isinstance(go, Go) and go.value is pool
        queued = await pool.dynamic_ask("third", tag="later")
        while await pool.len() != 1:
            await trio.sleep(0.005)
        assert await pool.cancel("later") == 1 and await pool.len() == 0
        with pytest.raises(RequestCancelled):
            await queued.wait()
        assert queued.result is None and queued.cancelled
        for pending in granted:
            assert await pool.done((await pending.wait()).ref) is True  # type: ignore[union-attr]
