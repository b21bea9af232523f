"""The Balancer over in-process brokers (balancing.md L1-L2, E1-E4, D1), under MockClock."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import BetterMeter, Broker, BrokerClosed, Drop, Go, Pending, open_broker
from sbroker.balance import Balancer, EndpointInfo, NoEndpoint, open_balancer
from sbroker.meters import PieMeter, Sample
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve, Regulator


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


class FlakyBroker(Broker):
    """A broker whose calls raise BrokerClosed (an endpoint failure) while ``failing``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failing = False
        self.requests = 0

    async def ask(self, value: Any = None) -> Any:
        self.requests += 1
        if self.failing:
            raise BrokerClosed("flaky")
        return await super().ask(value)

    def nb_ask(self, value: Any = None) -> Any:
        self.requests += 1
        if self.failing:
            raise BrokerClosed("flaky")
        return super().nb_ask(value)


class CountingBroker(Broker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    def estimate(self, side: str) -> int | None:
        self.reads += 1
        return super().estimate(side)


async def workers(broker: Broker, count: int, service: float, label: Any) -> None:
    """``count`` workers serving ``broker``, each taking ``service`` seconds per request."""

    async def worker() -> None:
        while True:
            result = await broker.ask_r(label)
            if isinstance(result, Go):
                await trio.sleep(service)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(worker)


def test_constructor_validation() -> None:
    broker = Broker()
    with pytest.raises(ValueError, match="policy"):
        Balancer([broker], policy="fastest")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="endpoint"):
        Balancer([42])
    with pytest.raises(ValueError, match="endpoint"):
        Balancer(["tcp://nowhere"])
    with pytest.raises(TypeError, match="ejection"):
        Balancer([broker], ejection=5)  # type: ignore[arg-type]


async def test_best_of_two_favours_faster_broker_and_converges(
    clock: trio.testing.MockClock,
) -> None:
    # L2 best_of_two: 3 workers against 1; the fast broker ends up with about 3/4.
    fast = Broker(ask=TimeoutQueue(timeout=5.0), meters=[BetterMeter(update=0.01)])
    slow = Broker(ask=TimeoutQueue(timeout=5.0), meters=[BetterMeter(update=0.01)])
    served: list[str] = []
    async with trio.open_nursery() as nursery:
        for broker, count, label in ((fast, 3, "fast"), (slow, 1, "slow")):
            await nursery.start(broker.run)
            nursery.start_soon(workers, broker, count, 0.01, label)
        async with open_balancer([fast, slow], rng=random.Random(7)) as balancer:

            async def client() -> None:
                result = await balancer.ask()
                if isinstance(result, Go):
                    served.append(result.value)

            async with trio.open_nursery() as clients:
                for _ in range(2000):  # 360 requests/s against a capacity of 400/s
                    clients.start_soon(client)
                    await trio.sleep(1 / 360)
        nursery.cancel_scope.cancel()
    assert len(served) == 2000
    late = Counter(served[1000:])
    assert 0.65 < late["fast"] / 1000 < 0.85
    early = Counter(served[:1000])
    assert early["fast"] > early["slow"]


async def test_best_of_two_20_reads_on_a_fifth(clock: trio.testing.MockClock) -> None:
    # L2 best_of_two_20 = B5 "rand": estimates read on about 20 % of picks.
    brokers = [CountingBroker(meters=[BetterMeter()]) for _ in range(4)]
    async with open_balancer(brokers, "best_of_two_20", rng=random.Random(3)) as balancer:
        for _ in range(2000):
            assert isinstance(await balancer.nb_ask(), Drop)
    reads = sum(broker.reads for broker in brokers)
    assert 0.17 < reads / 2 / 2000 < 0.23


@pytest.mark.parametrize("policy", ["random", "round_robin", "least_loaded", "best_of_two"])
async def test_policies_spread(policy: Any, clock: trio.testing.MockClock) -> None:
    # L2: every policy reaches every endpoint; round robin exactly evenly.
    brokers = [FlakyBroker(meters=[BetterMeter()]) for _ in range(4)]
    async with open_balancer(brokers, policy, rng=random.Random(1)) as balancer:
        for _ in range(400):
            await balancer.nb_ask()
    counts = [broker.requests for broker in brokers]
    assert all(count > 40 for count in counts)
    if policy == "round_robin":
        assert counts == [100] * 4


async def test_least_loaded_prefers_fewer_in_flight(clock: trio.testing.MockClock) -> None:
    # L2 least_loaded: of two, the one with fewer of this balancer's requests in flight.
    a, b = Broker(), Broker()
    async with open_balancer([a, b], "least_loaded", rng=random.Random(2)) as balancer:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(balancer.ask)
                await trio.sleep(0.001)
            assert (a.len(), b.len()) == (5, 5)
            nursery.cancel_scope.cancel()


async def test_ejection_single_probe_under_concurrency(clock: trio.testing.MockClock) -> None:
    # E1, E3: 5 failures eject; 100 tasks picking when the ejection ends send one probe;
    # a cancelled probe releases its lease; the next request probes; success reinstates.
    flaky = FlakyBroker()
    others = [Broker(ask=TimeoutQueue(timeout=None)) for _ in range(3)]
    async with open_balancer([flaky, *others], "round_robin", rng=random.Random(0)) as balancer:
        flaky.failing = True
        for _ in range(20):
            result = await balancer.nb_ask()  # failures are retried on another endpoint
            assert isinstance(result, Drop)
        info = balancer.endpoints()[0]
        assert (info.state, info.failures) == ("ejected", 5)
        assert info.ejected_until is not None
        flaky.failing = False
        before = flaky.requests
        async with trio.open_nursery() as nursery:
            cancel_scopes: list[trio.CancelScope] = []

            async def picker() -> None:
                await trio.sleep_until(info.ejected_until)  # type: ignore[arg-type]
                with trio.CancelScope() as scope:
                    cancel_scopes.append(scope)
                    await balancer.ask()

            for _ in range(100):
                nursery.start_soon(picker)
            await trio.sleep_until(info.ejected_until + 1)  # type: ignore[operator]
            assert flaky.requests - before == 1  # exactly one probe
            assert balancer.endpoints()[0].state == "probing"
            assert flaky.len() == 1
            # cancel the callers (the probe's among them): its lease is released
            for scope in cancel_scopes:
                scope.cancel()
            await trio.sleep(0.1)
            assert flaky.len() == 0
            assert balancer.endpoints()[0].state == "ejected"
            # the next request probes; an answer (even Drop) reinstates
            result = await balancer.nb_ask()
            assert isinstance(result, Drop)
            assert flaky.requests - before == 2
            assert balancer.endpoints()[0].state == "up"
            assert balancer.endpoints()[0].failures == 0


async def test_no_endpoint(clock: trio.testing.MockClock) -> None:
    # L4: none eligible, or the retry failed too -> NoEndpoint (a BrokerClosed).
    async with open_balancer([]) as balancer:
        with pytest.raises(NoEndpoint):
            await balancer.ask()
    a, b = FlakyBroker(), FlakyBroker()
    a.failing = b.failing = True
    async with open_balancer([a, b], ejection=None) as balancer:
        with pytest.raises(BrokerClosed) as caught:
            await balancer.nb_ask()
        assert isinstance(caught.value, NoEndpoint)
        assert set(caught.value.tried) == {a, b}


async def test_endpoints_records_and_async_in_flight(clock: trio.testing.MockClock) -> None:
    # E4: frozen records in order added; a queued async_ask counts until settled.
    async with open_broker(meters=[BetterMeter()]) as a, open_broker() as b, open_balancer(
        [a, b], "round_robin"
    ) as balancer:
        await trio.sleep(0.05)
        pending = await balancer.async_ask("x")  # round robin: b first
        assert isinstance(pending, Pending)
        infos = balancer.endpoints()
        assert [i.endpoint for i in infos] == [a, b]
        assert infos[1].in_flight == 1 and infos[0].in_flight == 0
        assert infos[0].estimates == (0, 0) and infos[1].estimates == (None, None)
        assert infos[0] == EndpointInfo(a, "up", 0, 0, (0, 0), None)
        with pytest.raises(AttributeError):
            infos[0].state = "ejected"  # type: ignore[misc]
        assert await balancer.cancel(pending.tag) == 1
        await trio.sleep(0.001)
        assert balancer.endpoints()[1].in_flight == 0
        pending = await balancer.async_ask("y")  # a
        assert balancer.endpoints()[0].in_flight == 1
        assert isinstance(b.nb_ask_r(), Drop)
        assert isinstance(a.nb_ask_r(), Go)
        await trio.sleep(0.001)
        assert balancer.endpoints()[0].in_flight == 0


async def test_regulator_permits_route_back(clock: trio.testing.MockClock) -> None:
    # L1: continue_/done go to the regulator that granted the permit.
    r1, r2 = Regulator(valve=OpenValve()), Regulator(valve=OpenValve())
    async with open_balancer([r1, r2], "round_robin") as balancer:
        first = await balancer.ask()
        second = await balancer.ask()
        assert isinstance(first, Go) and isinstance(second, Go)
        assert (r1.size(), r2.size()) == (1, 1)
        assert isinstance(await balancer.continue_(first.ref), Go)
        assert await balancer.done(first.ref)
        assert await balancer.done(second.ref)
        assert not await balancer.done(second.ref)
        assert (r1.size(), r2.size()) == (0, 0)


async def test_add_remove_under_load(clock: trio.testing.MockClock) -> None:
    # D1: 50 tasks picking while the set shrinks 8 -> 2 and grows back lose nothing;
    # after each change they pick only current endpoints.
    brokers = [Broker(ask=TimeoutQueue(timeout=None)) for _ in range(8)]
    answers: list[tuple[float, Any]] = []
    async with trio.open_nursery() as nursery:
        for index, broker in enumerate(brokers):
            await nursery.start(broker.run)
            nursery.start_soon(workers, broker, 2, 0.002, index)
        async with open_balancer(brokers, "least_loaded", rng=random.Random(5)) as balancer:

            async def client() -> None:
                for _ in range(40):
                    start = trio.current_time()
                    result = await balancer.ask()
                    assert isinstance(result, Go)
                    answers.append((start, result.value))
                    await trio.sleep(0.001)

            changes: list[tuple[float, set[int]]] = []
            async with trio.open_nursery() as clients:
                for _ in range(50):
                    clients.start_soon(client)
                await trio.sleep(0.01)
                for index in range(2, 8):
                    balancer.remove(brokers[index])
                    await trio.sleep(0.003)
                changes.append((trio.current_time(), {0, 1}))
                await trio.sleep(0.02)
                for index in range(2, 8):
                    balancer.add(brokers[index])
                changes.append((trio.current_time(), set(range(8))))
        nursery.cancel_scope.cancel()
    assert len(answers) == 50 * 40
    shrunk_at, grown_at = changes[0][0], changes[1][0]
    # requests picked after each change (times are when the request was made)
    during = {value for at, value in answers if shrunk_at <= at < grown_at}
    assert during == {0, 1}
    after = {value for at, value in answers if at >= grown_at}
    assert after == set(range(8))


async def test_protector_drops_before_choosing(clock: trio.testing.MockClock) -> None:
    # sprotector: a meter's gate refuses before any endpoint is chosen.
    class RefuseAll:
        def init(self, host: Any, now: int) -> tuple[Any, int]:
            host.set_protector(self)
            self.samples: list[Sample] = []
            return self, now

        def admit(self, side: str) -> bool:
            return side == "ask_r"

        def update(self, sample: Sample) -> int:
            self.samples.append(sample)
            return sample.time + 100_000_000

        def config_change(self, meter: Any, now: int) -> None:
            return None

        def close(self) -> None:
            pass

    meter = RefuseAll()
    broker = FlakyBroker(meters=[BetterMeter()])
    async with open_balancer([broker], protector=meter) as balancer:
        await trio.sleep(0.25)
        assert await balancer.ask() == Drop(0)
        assert broker.requests == 0
        assert isinstance(await balancer.nb_ask_r(), Drop)
        assert len(meter.samples) == 3


async def test_closed_host_as_endpoint(clock: trio.testing.MockClock) -> None:
    # L4: a closed in-process broker is a failure before writing: retried once elsewhere.
    async with open_broker() as closed, open_broker() as fine:
        closed.close()
        async with open_balancer([closed, fine], "round_robin") as balancer:
            for _ in range(4):
                assert isinstance(await balancer.nb_ask(), Drop)
            assert balancer.endpoints()[0].failures == 2


async def test_pie_protector_gates_a_backed_up_set(clock: trio.testing.MockClock) -> None:
    # sprotector: a PieMeter in front drops before choosing once the best estimate stays high.
    broker = FlakyBroker(ask=TimeoutQueue(timeout=None), meters=[BetterMeter()])
    meter = PieMeter(ask=dict(target=0.05, interval=0.5), rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        for _ in range(3):
            nursery.start_soon(Broker.ask, broker, "stuck")  # never served: asks back up
        async with open_balancer([broker], protector=meter) as balancer:
            refused = reached = 0
            for _ in range(600):  # 6 s of nb_asks, 10 ms apart
                before = broker.requests
                result = await balancer.nb_ask()
                assert isinstance(result, Drop)
                if broker.requests == before:
                    refused += 1
                else:
                    reached += 1
                await trio.sleep(0.01)
            assert balancer.alarms() == frozenset()
        nursery.cancel_scope.cancel()
    assert refused > 300 and reached > 30  # deterministic here: 533 and 67


async def test_best_of_two_reads_two_estimates_per_pick(clock: trio.testing.MockClock) -> None:
    # L2, pick path: no scan; 1024 endpoints, exactly two estimates read per pick.
    brokers = [CountingBroker(meters=[BetterMeter()]) for _ in range(1024)]
    async with open_balancer(brokers, rng=random.Random(8)) as balancer:
        for _ in range(100):
            await balancer.nb_ask()
    assert sum(broker.reads for broker in brokers) == 200
