"""Cancelling remote calls: S6 withdrawal, exactly-once answers, msgids never reused in flight."""

from __future__ import annotations

import random

import client_harness
import trio
from client_harness import TIMEOUT, Server, served

from sbroker import Go
from sbroker.client._session import MSGID_LIMIT

server = client_harness.server


async def test_a_cancelled_ask_is_withdrawn(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        with trio.fail_after(TIMEOUT):
            with trio.move_on_after(0.05) as scope:
                await broker.ask("never served")
            assert scope.cancelled_caught
            assert await broker.len() == 0  # S6: the server removed it


async def test_every_match_reaches_exactly_the_caller_that_made_it(server: Server) -> None:
    """Random trio cancellations of asks on one connection while workers serve from another:
    every Go a worker got reached the very ask it matched (equal refs, that ask's value), and
    no ask got a Go a worker did not (no late reply reaches another caller)."""
    rng = random.Random(10)
    client_records: dict[int, object] = {}
    worker_records: dict[int, object] = {}
    async with served(server) as client_conn, served(server) as worker_conn:
        client, worker = client_conn.broker("default"), worker_conn.broker("default")

        async def ask(i: int, timeout: float) -> None:
            with trio.move_on_after(timeout):
                result = await client.ask(i)
                client_records[i] = result.ref if isinstance(result, Go) else None  # no checkpoint

        async def serve(pause: float) -> None:
            while True:
                result = await worker.ask_r()
                assert isinstance(result, Go)
                worker_records[result.value] = result.ref
                await trio.sleep(pause)

        with trio.fail_after(TIMEOUT * 3):
            async with trio.open_nursery() as workers:
                for _ in range(3):
                    workers.start_soon(serve, rng.uniform(0, 0.004))
                async with trio.open_nursery() as clients:
                    for i in range(120):
                        clients.start_soon(ask, i, rng.uniform(0, 0.05))
                        if i % 10 == 0:
                            await trio.sleep(0.002)
                workers.cancel_scope.cancel()
            assert await client.len() == 0 and await worker.len_r() == 0
    assert worker_records == {i: ref for i, ref in client_records.items() if ref is not None}
    assert worker_records  # matches were made (and compared) while cancellations raced them


async def test_msgids_wrap_and_skip_requests_in_flight(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        session = await conn.current_session()
        session._msgid = MSGID_LIMIT - 2
        pending = await broker.async_ask("held")  # msgid 2**32 - 1, stays in flight
        session._msgid = MSGID_LIMIT - 2
        assert await broker.len() == 1  # msgid 0: 2**32 - 1 is skipped while in flight
        assert session._msgid == 0
        go = await broker.nb_ask_r("served")
        assert isinstance(go, Go) and isinstance(await pending.wait(), Go)
        assert (await pending.wait()).ref == go.ref  # type: ignore[union-attr]
