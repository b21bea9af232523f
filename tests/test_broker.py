"""Broker behaviour through its public API, under trio's MockClock (api.md)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sbroker
from sbroker import Broker, BrokerClosed, Drop, Go, Pending, RequestCancelled, open_broker
from sbroker.queues import DropQueue, TimeoutQueue

MS = 1_000_000
S = 1_000_000_000


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


async def test_match_times_are_exact(clock: trio.testing.MockClock) -> None:
    # api.md Results: asker rt = b - a, sojourn = t - a; ask_r side rt = a - b, sojourn = t - b.
    async with open_broker() as broker:
        results: list[sbroker.Go | sbroker.Drop] = []

        async def client() -> None:
            results.append(await broker.ask("client"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.sleep(0.3)
            worker_result = await broker.ask_r("worker")
        assert results == [Go(worker_result.ref, "worker", 300 * MS, 300 * MS)]  # type: ignore[union-attr]
        assert worker_result == Go(results[0].ref, "client", -300 * MS, 0)  # type: ignore[union-attr]


async def test_timeout_drop_has_exact_sojourn(clock: trio.testing.MockClock) -> None:
    async with open_broker(ask=TimeoutQueue(timeout=1.0)) as broker:
        start = trio.current_time()
        assert await broker.ask() == Drop(S)
        assert trio.current_time() - start == pytest.approx(1.0)
        assert broker.len() == 0


async def test_fifo_and_lifo_order(clock: trio.testing.MockClock) -> None:
    for out, expected in (("fifo", [0, 1, 2]), ("lifo", [2, 1, 0])):
        async with open_broker(ask_r=TimeoutQueue(timeout=None, out=out)) as broker:
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(broker.ask_r, i)
                    await trio.sleep(0.01)
                served = [(await broker.ask()).value for _ in range(3)]  # type: ignore[union-attr]
            assert served == expected


async def test_cancelled_waiter_is_removed_and_never_matched(
    clock: trio.testing.MockClock,
) -> None:
    # api.md rule 2
    async with open_broker() as broker:
        with trio.move_on_after(0.5) as scope:
            await broker.ask("gone")
        assert scope.cancelled_caught
        assert broker.len() == 0
        assert broker.nb_ask_r() == Drop(0)


async def test_matched_caller_gets_go_even_if_cancelled_after_the_match(
    clock: trio.testing.MockClock,
) -> None:
    # api.md rule 2: a caller whose match was made gets its Go.
    async with open_broker() as broker:
        got: list[object] = []

        async def client(scope_box: list[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                scope_box.append(scope)
                got.append(await broker.ask("c"))

        async with trio.open_nursery() as nursery:
            box: list[trio.CancelScope] = []
            nursery.start_soon(client, box)
            await trio.sleep(0.1)
            result = broker.nb_ask_r("w")  # matches, reschedules the client
            box[0].cancel()  # too late: the match is made
        assert isinstance(result, Go)
        assert got == [Go(result.ref, "w", 100 * MS, 100 * MS)]


async def test_cancellation_before_the_call_makes_no_request(
    clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker:
        broker.async_ask_r("w")
        with trio.CancelScope() as scope:
            scope.cancel()
            await broker.ask()
        assert broker.len_r() == 1


async def test_nb_calls(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        assert broker.nb_ask() == Drop(0)
        assert broker.nb_ask_r() == Drop(0)
        assert broker.len() == broker.len_r() == 0
        pending = broker.async_ask_r("w")
        go = broker.nb_ask("c")
        assert isinstance(go, Go) and go.value == "w"
        assert pending.result == Go(go.ref, "c", 0, 0)


async def test_async_ask_pending_lifecycle(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        pending = broker.async_ask("c", tag="t1")
        assert isinstance(pending, Pending)
        assert pending.tag == "t1" and pending.result is None
        assert broker.len() == 1
        await trio.sleep(0.2)
        go = await broker.ask_r("w")
        assert isinstance(go, Go)
        assert await pending.wait() == Go(go.ref, "w", 200 * MS, 200 * MS)
        assert pending.cancel() is False  # already answered


async def test_async_ask_settled_at_once_when_counterparty_waits(
    clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker:
        broker.async_ask_r("w")
        pending = broker.async_ask("c")
        assert isinstance(pending.result, Go)
        assert await pending.wait() == pending.result


async def test_fresh_tags_are_unique(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        first, second = broker.async_ask(), broker.async_ask()
        assert first.tag != second.tag
        assert broker.cancel(first.tag) == 1
        assert broker.len() == 1


async def test_pending_cancel_and_wait_does_not_hang(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        pending = broker.async_ask("c")
        waiter_errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await pending.wait()
            except RequestCancelled as error:
                waiter_errors.append(error)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.1)
            assert pending.cancel() is True
        assert len(waiter_errors) == 1
        assert pending.cancel() is False
        assert pending.result is None and pending.cancelled
        assert broker.len() == 0
        with pytest.raises(RequestCancelled):
            await pending.wait()


async def test_cancel_by_tag_counts_across_sides(clock: trio.testing.MockClock) -> None:
    async with open_broker(ask=DropQueue(), ask_r=DropQueue()) as broker:
        a = broker.async_ask(1, tag="x")
        b = broker.async_ask(2, tag="x")
        c = broker.async_ask(3, tag="y")
        assert broker.cancel("x") == 2
        assert broker.cancel("x") == 0
        assert broker.cancel("nobody") == 0
        assert a.cancelled and b.cancelled and not c.cancelled
        assert broker.len() == 1
        with pytest.raises(RequestCancelled):
            await a.wait()


async def test_cancel_never_reaches_blocking_requests(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker, trio.open_nursery() as nursery:
        nursery.start_soon(broker.ask)
        await trio.sleep(0.1)
        assert broker.cancel(None) == 0
        assert broker.len() == 1
        assert isinstance(broker.nb_ask_r(), Go)


async def test_dynamic_ask(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        pending = broker.dynamic_ask("c")
        assert isinstance(pending, Pending)
        go = broker.dynamic_ask_r("w")
        assert isinstance(go, Go) and go.value == "c"
        assert pending.result == Go(go.ref, "w", 0, 0)


async def test_arrival_dropped_at_max_len(clock: trio.testing.MockClock) -> None:
    # queues.md Q11 through the broker: the tail-dropped caller gets Drop(0) at once.
    async with open_broker(ask=DropQueue(max_len=1)) as broker:
        first = broker.async_ask("first")
        assert await broker.ask("second") == Drop(0)
        assert broker.async_ask("third").result == Drop(0)
        assert first.result is None and broker.len() == 1


async def test_change_config_keeps_requests_in_order(clock: trio.testing.MockClock) -> None:
    # api.md rule 3, queues.md Q7: another class takes the queued requests over, in order.
    async with open_broker(ask=TimeoutQueue(timeout=10.0)) as broker:
        pendings = [broker.async_ask(i) for i in range(5)]
        broker.change_config(ask=DropQueue(out="lifo"))
        assert broker.len() == 5
        broker.change_config(ask=TimeoutQueue(timeout=None))
        served = [broker.nb_ask_r().value for _ in range(5)]  # type: ignore[union-attr]
        assert served == [0, 1, 2, 3, 4]
        assert all(isinstance(p.result, Go) for p in pendings)


async def test_change_config_drops_what_the_new_rules_drop(clock: trio.testing.MockClock) -> None:
    async with open_broker(ask=TimeoutQueue(timeout=10.0)) as broker:
        old = broker.async_ask("old")
        await trio.sleep(2)
        new = broker.async_ask("new")
        broker.change_config(ask=TimeoutQueue(timeout=1.0))  # old has waited 2 s
        assert old.result == Drop(2 * S)
        assert new.result is None
        broker.change_config(ask=DropQueue(max_len=0))
        assert new.result == Drop(0)


async def test_same_class_change_takes_new_timeout_from_the_timer(
    clock: trio.testing.MockClock,
) -> None:
    async with open_broker(ask=TimeoutQueue(timeout=10.0)) as broker:
        pending = broker.async_ask()
        broker.change_config(ask=TimeoutQueue(timeout=0.5))
        assert await pending.wait() == Drop(500 * MS)


async def test_invalid_change_config_changes_nothing(clock: trio.testing.MockClock) -> None:
    # api.md rule 3: no part of a partly invalid change is applied.
    async with open_broker(ask=TimeoutQueue(timeout=1.0)) as broker:
        broker.async_ask()
        before = broker.config()
        with pytest.raises(TypeError, match="ask_r"):
            broker.change_config(ask=DropQueue(), ask_r="fifo")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="meters"):
            broker.change_config(ask=DropQueue(), meters=[object()])
        with pytest.raises(TypeError, match="meters"):
            broker.change_config(ask=DropQueue(), meters=5)  # type: ignore[arg-type]
        assert broker.config() == before
        assert broker.len() == 1


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="ask"):
        Broker(ask=TimeoutQueue)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ask_r"):
        Broker(ask_r=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="meters"):
        Broker(meters=[1])  # type: ignore[list-item]


async def test_the_same_policy_object_serves_both_queues(clock: trio.testing.MockClock) -> None:
    # api.md rule 4
    policy = TimeoutQueue(timeout=1.0)
    async with open_broker(ask=policy, ask_r=policy) as first, open_broker(ask=policy) as second:
        first.async_ask()
        second.async_ask_r()
        assert (first.len(), first.len_r(), second.len(), second.len_r()) == (1, 0, 0, 1)


async def test_close_drops_everything_and_later_calls_raise(
    clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        broker = Broker(ask=TimeoutQueue(timeout=None), ask_r=TimeoutQueue(timeout=None))
        await nursery.start(broker.run)
        blocked: list[object] = []

        async def client() -> None:
            blocked.append(await broker.ask("c"))

        nursery.start_soon(client)
        pending = broker.async_ask_r("w2", tag="t")  # matches the client? not yet queued
        await trio.sleep(0.25)
        waiting = broker.async_ask_r("w3")
        assert broker.len_r() == 1
        broker.close()
        broker.close()  # idempotent
    assert isinstance(pending.result, Go) or isinstance(blocked[0], Go)
    assert waiting.result == Drop(0)
    assert broker.len() == broker.len_r() == 0
    for call in (
        broker.nb_ask,
        broker.nb_ask_r,
        broker.async_ask,
        broker.async_ask_r,
        broker.dynamic_ask,
        broker.dynamic_ask_r,
        lambda: broker.cancel("t"),
        lambda: broker.change_config(ask=DropQueue()),
    ):
        with pytest.raises(BrokerClosed):
            call()
    with pytest.raises(BrokerClosed):
        await broker.ask()
    with pytest.raises(BrokerClosed):
        await broker.ask_r()
    assert issubclass(BrokerClosed, trio.ClosedResourceError)


async def test_leaving_open_broker_drops_queued_requests(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        pending = broker.async_ask()
        await trio.sleep(1)
    assert pending.result == Drop(S)


async def test_blocked_callers_get_drop_on_close(clock: trio.testing.MockClock) -> None:
    results: list[object] = []
    async with open_broker(ask=TimeoutQueue(timeout=None)) as broker:

        async def client() -> None:
            results.append(await broker.ask())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            nursery.start_soon(client)
            await trio.sleep(3)
            broker.close()
    assert results == [Drop(3 * S), Drop(3 * S)]


async def test_cancelling_run_closes_the_broker(clock: trio.testing.MockClock) -> None:
    broker = Broker()
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        pending = broker.async_ask()
        nursery.cancel_scope.cancel()
    assert pending.result == Drop(0)
    with pytest.raises(BrokerClosed):
        broker.nb_ask()


async def test_run_twice_is_an_error(clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        with pytest.raises(RuntimeError, match="already running"):
            await broker.run()


def test_results_support_match_statements() -> None:
    match Go("ref", "value", 5, 7):
        case Go(value=value, sojourn_time=sojourn):
            assert (value, sojourn) == ("value", 7)
        case _:
            pytest.fail("Go did not match")
    match Drop(3):
        case Drop(sojourn_time=sojourn):
            assert sojourn == 3
        case _:
            pytest.fail("Drop did not match")
