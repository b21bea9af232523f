"""Issue 9 defect 4: a FairQueue key is computed once, at enqueue, and remembered.

No user code runs inside trio's abort callback (api.md rule 2, F2, F8): a key
function that would raise on a second call cannot kill the run, a value
mutated while it waits is removed from the sub-queue it was filed in, and a
key that raises in ``async_ask`` leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import Broker, Drop, Go, Regulator
from sbroker.queues import DropQueue, FairQueue, Request, TimeoutQueue
from sbroker.regulator import OpenValve


class OnceOnly:
    """A key function that records every second call for the same value.

    (Raising there instead, as a user's key might, crashed the whole run with
    ``TrioInternalError`` when the key was recomputed in trio's abort callback.)
    """

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.again: list[Any] = []

    def __call__(self, value: Any) -> Hashable:
        if id(value) in self.seen:
            self.again.append(value)
        self.seen.add(id(value))
        return value["k"]  # type: ignore[no-any-return]


def test_a_cancelled_waiter_is_removed_without_calling_the_key_again() -> None:
    key = OnceOnly()

    async def main() -> None:
        broker = Broker(ask=FairQueue(DropQueue(), key=key), ask_r=DropQueue())
        values = [{"k": i % 3} for i in range(6)]
        async with trio.open_nursery() as nursery:
            for value in values:
                nursery.start_soon(broker.ask, value)
            await trio.testing.wait_all_tasks_blocked()
            assert broker.len() == 6
            nursery.cancel_scope.cancel()
        assert broker.len() == 0
        assert isinstance(broker.nb_ask_r(), Drop)  # nobody left to match

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert key.again == []  # no user code ran in the abort callbacks


async def test_a_mutated_value_leaves_the_sub_queue_it_was_filed_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = Broker(ask=FairQueue(TimeoutQueue(timeout=None), key=lambda v: v["k"]))
    value = {"k": "a"}
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.ask, value)
            await trio.testing.wait_all_tasks_blocked()
            value["k"] = "b"  # mutated while it waits
    assert broker.len() == 0
    assert isinstance(broker.nb_ask_r(), Drop)  # the cancelled caller is never matched
    pending = broker.async_ask({"k": "c"})
    value["k"] = "z"
    assert pending.cancel() and broker.len() == 0


@pytest.mark.parametrize("host", ["broker", "regulator"])
async def test_a_key_that_raises_in_async_ask_leaves_nothing_behind(host: str) -> None:
    def key(value: Any) -> Hashable:
        if value == "bad":
            raise LookupError("no key for bad")
        return value  # type: ignore[no-any-return]

    policy = FairQueue(DropQueue(), key=key)
    target: Any
    if host == "broker":
        target = Broker(ask=policy)
    else:
        target = Regulator(queue=policy, valve=OpenValve(max_size=0))
    with pytest.raises(LookupError):
        target.async_ask("bad", tag="t")
    assert not target._pending._by_tag  # nothing registered under "t"
    assert target.len() == 0
    good = target.async_ask("good", tag="t")
    assert target.cancel("t") == 1 and good.cancelled


def test_the_key_is_computed_once_per_request_however_it_leaves() -> None:
    calls: list[Any] = []

    def key(value: Any) -> Hashable:
        calls.append(value)
        return value % 2

    state, _ = FairQueue(DropQueue(), key=key).init([], 0, lambda request, now: None)
    requests = [Request(0, i, tag=i % 3) for i in range(9)]
    for request in requests:
        state.handle_in(request, 0)
    state.remove(requests[4], 0)
    state.cancel_requests(0, requests, 0)
    state.handle_cancel(1, 0)
    state.handle_out(0)
    assert calls == list(range(9))
    assert len(state) == 2  # of 2, 5 and 8


async def test_a_broker_fair_queue_matches_after_a_mutation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Mutating a waiting value changes nothing about its queue or its answer."""
    broker = Broker(ask=FairQueue(DropQueue(), key=lambda v: v["k"]))
    value = {"k": 1}
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            result = await broker.ask(value)
            assert isinstance(result, Go) and result.value == "worker"

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        value["k"] = 2
        assert isinstance(broker.nb_ask_r("worker"), Go)
