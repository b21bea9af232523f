"""Queue policies behind a real broker under MockClock (queues.md §4, §5, §5a; api.md rule 3)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from sbroker import Drop, Go, open_broker
from sbroker.queues import (
    AdaptiveQueue,
    CodelQueue,
    DropQueue,
    FairQueue,
    QueuePolicy,
    TimeoutQueue,
)

MS = 1_000_000

#: One lenient configuration per class: nothing is dropped within these tests.
LENIENT: list[QueuePolicy] = [
    DropQueue(),
    TimeoutQueue(timeout=None),
    CodelQueue(target=10.0, interval=10.0),
    AdaptiveQueue(target=10.0, interval=10.0, timeout=None),
    FairQueue(TimeoutQueue(timeout=None), key=lambda value: value % 2),
]


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.permutations(LENIENT, 2)),
    ids=lambda policy: type(policy).__name__,
)
async def test_change_between_classes_keeps_requests_in_order(
    clock: trio.testing.MockClock, first: QueuePolicy, second: QueuePolicy
) -> None:
    # api.md rule 3, queues.md Q7: terminate() hands over oldest first; init takes them in order.
    async with open_broker(ask=first) as broker:
        pendings = []
        for value in range(6):
            pendings.append(broker.async_ask(value))
            await trio.sleep(0.001)
        broker.change_config(ask=second)
        assert broker.len() == 6
        broker.change_config(ask=first)
        broker.change_config(ask=second)
        served = [broker.nb_ask_r().value for _ in range(6)]  # type: ignore[union-attr]
    if isinstance(second, FairQueue):  # round robin over keys 0, 1 (F10: oldest key first)
        assert served == [0, 1, 2, 3, 4, 5]
    else:
        assert served == list(range(6))
    assert all(isinstance(p.result, Go) for p in pendings)


async def test_codel_begins_dropping_after_an_interval_then_more_often(
    clock: trio.testing.MockClock,
) -> None:
    # C5, C3: a slow worker side; the first drop comes one interval after the queue turned
    # slow, then drops come at shrinking gaps (interval / sqrt(count)).
    drops: list[tuple[int, int]] = []  # (time ns, sojourn ns)
    served: list[tuple[int, int]] = []
    async with open_broker(ask=CodelQueue(target=0.01, interval=0.1)) as broker:

        async def client() -> None:
            sent = round(trio.current_time() * 1e9)
            match await broker.ask():
                case Go(sojourn_time=waited):
                    served.append((sent, waited))
                case Drop(sojourn_time=waited):
                    drops.append((sent + waited, waited))

        async def worker() -> None:
            while True:
                await broker.ask_r()
                await trio.sleep(0.05)  # 20/s: a fifth of the offered load

        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker)
            for _ in range(100):  # 100/s for 1 s
                nursery.start_soon(client)
                await trio.sleep(0.01)
            await trio.sleep(3)  # arrivals stop: the worker drains what is left
            light_load_start = round(trio.current_time() * 1e9)
            for _ in range(20):  # then 10/s, half of what the worker serves
                nursery.start_soon(client)
                await trio.sleep(0.1)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert drops
    first_drop = drops[0][0]
    assert first_drop >= 110 * MS  # slow at 10 ms at the earliest, then one interval (C5)
    timer_drops = [t for t, _ in drops[:6]]
    gaps = [b - a for a, b in itertools.pairwise(timer_drops)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(gaps))  # more often
    assert gaps[-1] < gaps[0]
    assert all(sojourn >= 10 * MS for _, sojourn in drops)  # C15 / P8: never a fast one
    assert drops[-1][0] < light_load_start  # dropping stopped once the overload ended
    light = [waited for sent, waited in served if sent >= light_load_start]
    assert len(light) == 20 and max(light) < 10 * MS  # all served within target


async def test_adaptive_congestion_begins_exactly_one_interval_after_empty(
    clock: trio.testing.MockClock,
) -> None:
    # A3, A4, A8: the queue has not been empty since 0; at 100 ms it is congested and every
    # request that has waited the 10 ms target is dropped at once.
    async with open_broker(ask=AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0)) as broker:
        a = broker.async_ask("a")
        await trio.sleep(0.05)
        b = broker.async_ask("b")
        await trio.sleep(0.045)
        c = broker.async_ask("c")
        await trio.sleep(0.0049)
        assert (a.result, b.result, c.result) == (None, None, None)  # before 100 ms
        await trio.sleep(0.0001)
        await trio.testing.wait_all_tasks_blocked()
        assert a.result == Drop(100 * MS) and b.result == Drop(50 * MS)
        assert c.result is None  # waited 5 ms only
        await trio.sleep(0.005)
        await trio.testing.wait_all_tasks_blocked()
        assert c.result == Drop(10 * MS)  # its own target, while still congested


async def test_adaptive_queue_that_keeps_emptying_never_drops_before_timeout(
    clock: trio.testing.MockClock,
) -> None:
    # A3: never congested while the queue keeps emptying, so the limit stays at `timeout`.
    async with open_broker(ask=AdaptiveQueue(target=0.01, interval=0.1, timeout=1.0)) as broker:
        answers = []
        for _ in range(100):
            pending = broker.async_ask()
            await trio.sleep(0.09)  # waits 90 ms: far past target, but the queue empties
            broker.nb_ask_r()
            answers.append(await pending.wait())
            await trio.sleep(0.01)
        assert all(a == Go(a.ref, None, 90 * MS, 90 * MS) for a in answers)  # type: ignore[union-attr]
        last = broker.async_ask()
        await trio.sleep(2)
        # Never served, the lone request keeps the queue non-empty: congested after 100 ms.
        assert last.result == Drop(100 * MS)
