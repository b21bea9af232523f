"""The choice functions of regulation.md B5-B7 and the balancer's per-policy picks."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import trio
import trio.testing

from sbroker import BetterMeter, Broker, open_broker
from sbroker.balance import affinity_choice, better_choice, random_choice
from sbroker.balance.choice import compare, pick_best_of_two, pick_least_loaded, two_distinct


class FakeHost:
    """A host publishing fixed estimates, counting reads."""

    def __init__(self, name: str, ask: int | None, ask_r: int | None = None, closed: bool = False):
        self.name = name
        self._estimates = {"ask": ask, "ask_r": ask_r}
        self._closed = closed
        self.reads = 0

    def estimate(self, side: str) -> int | None:
        self.reads += 1
        return self._estimates[side]

    def __repr__(self) -> str:
        return self.name


def test_b6_compare_rows() -> None:
    # B6: X ask 42, Y ask 10, Z unmetered.
    x, y, z = FakeHost("X", 42), FakeHost("Y", 10), FakeHost("Z", None)
    hosts = [x, y, z]
    assert compare(hosts, 0, 1, "ask") is y
    assert compare(hosts, 1, 0, "ask") is y
    assert compare(hosts, 0, 2, "ask") is x
    assert compare(hosts, 2, 0, "ask") is x
    # ties go to b
    x10, y10 = FakeHost("X", 10), FakeHost("Y", 10)
    assert compare([x10, y10], 0, 1, "ask") is y10
    assert compare([x10, y10], 1, 0, "ask") is x10


def test_b6_unmetered_and_closed() -> None:
    # B6: neither metered: None if one is closed, LookupError if both open.
    open_a, open_b = FakeHost("A", None), FakeHost("B", None)
    with pytest.raises(LookupError, match="no BetterMeter"):
        compare([open_a, open_b], 0, 1, "ask")
    closed = FakeHost("C", None, closed=True)
    assert compare([open_a, closed], 0, 1, "ask") is None
    assert compare([closed, open_a], 0, 1, "ask") is None


def test_b5_empty_one_and_sides() -> None:
    # B5: empty -> None; one host -> it without reading its estimate.
    assert better_choice([], "ask") is None
    only = FakeHost("only", 7)
    assert better_choice([only], "ask") is only
    assert only.reads == 0
    # each side compares its own estimate
    a, b = FakeHost("a", 1, 100), FakeHost("b", 100, 1)
    rng = random.Random(3)
    assert better_choice([a, b], "ask", rng=rng) is a
    assert better_choice([a, b], "ask_r", rng=rng) is b
    with pytest.raises(ValueError, match="method"):
        better_choice([a, b], "ask", method="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="side"):
        better_choice([a, b], "both")


def test_b5_best_of_two_draws_two_distinct() -> None:
    # B5: a, b = rng.sample(range(n), 2); compare(a, b).
    hosts = [FakeHost(str(i), i) for i in range(10)]
    rng, mirror = random.Random(11), random.Random(11)
    for _ in range(200):
        a, b = mirror.sample(range(10), 2)
        assert better_choice(hosts, "ask", rng=rng) is hosts[min(a, b)]


def test_b5_rand_reads_on_a_fifth() -> None:
    # B5 "rand": best-of-two with probability 0.2, else uniform without reading.
    hosts = [FakeHost(str(i), i) for i in range(4)]
    rng = random.Random(5)
    picks = Counter(better_choice(hosts, "ask", "rand", rng) for _ in range(5000))
    reads = sum(host.reads for host in hosts)
    assert 0.17 < reads / 2 / 5000 < 0.23
    assert set(picks) == set(hosts)


async def test_b5_affinity_and_b7() -> None:
    # B7: affinity is stable per task: hosts[id(task) % n].
    hosts = [FakeHost(str(i), i) for i in range(5)]
    task = trio.lowlevel.current_task()
    assert affinity_choice(hosts) is hosts[id(task) % 5]
    assert affinity_choice([]) is None
    rng = random.Random(1)
    # B5 "affinity": 80 % affinity, 20 % best-of-two.
    picks = Counter(better_choice(hosts, "ask", "affinity", rng) for _ in range(1000))
    assert picks[hosts[id(task) % 5]] > 750
    # B7 random_choice: None if empty, uniform otherwise.
    assert random_choice([]) is None
    fresh = [FakeHost(str(i), i) for i in range(5)]
    rng = random.Random(9)
    counts = Counter(random_choice(fresh, rng) for _ in range(5000))
    assert all(900 < counts[h] < 1100 for h in fresh)
    assert all(host.reads == 0 for host in fresh)


class Loaded:
    def __init__(self, in_flight: int, estimate: int | None = None) -> None:
        self.in_flight = in_flight
        self.estimate = estimate


def test_picks() -> None:
    rng = random.Random(4)
    seen = Counter(two_distinct(3, rng) for _ in range(3000))
    assert set(seen) == {(i, j) for i in range(3) for j in range(3) if i != j}
    light, heavy = Loaded(0), Loaded(5)
    assert all(pick_least_loaded([light, heavy], rng) is light for _ in range(20))
    assert pick_least_loaded([heavy], rng) is heavy
    # best of two: lower estimate wins; missing loses; neither -> least loaded (L2)
    fast, slow, unknown = Loaded(9, 1), Loaded(0, 50), Loaded(0, None)
    assert all(pick_best_of_two([fast, slow], lambda e: e.estimate, rng) is fast for _ in range(20))
    assert all(
        pick_best_of_two([unknown, slow], lambda e: e.estimate, rng) is slow for _ in range(20)
    )
    busy_unknown = Loaded(3, None)
    assert all(
        pick_best_of_two([busy_unknown, unknown], lambda e: e.estimate, rng) is unknown
        for _ in range(20)
    )


async def test_better_choice_over_brokers(autojump_clock: trio.testing.MockClock) -> None:
    # B5 over real brokers: the one with a waiting ask_r (worker idle) gets the asks.
    async with open_broker(meters=[BetterMeter()]) as busy, open_broker(
        meters=[BetterMeter()]
    ) as idle:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy.ask, "waiting client")
            nursery.start_soon(idle.ask_r, "waiting worker")
            await trio.sleep(0.35)
            hosts: list[Broker] = [busy, idle]
            assert busy.estimate("ask") > idle.estimate("ask") == 0  # type: ignore[operator]
            rng = random.Random(0)
            assert all(better_choice(hosts, "ask", rng=rng) is idle for _ in range(10))
            assert all(better_choice(hosts, "ask_r", rng=rng) is busy for _ in range(10))
            nursery.cancel_scope.cancel()
