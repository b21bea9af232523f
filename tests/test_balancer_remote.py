"""The Balancer over remote endpoints through a fake connector (balancing.md L3, L4, D1-D3).

The connector's "servers" hold real in-process brokers; connections forward
calls as the service client would. This tests the balancer's remote logic,
not sbroker.client.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
import trio
import trio.testing
from balance_harness import FakeConnector, FakeServer

from sbroker import BetterMeter, Broker, Drop, Go
from sbroker.balance import (
    DnsEndpoints,
    Ejection,
    Endpoints,
    FileEndpoints,
    Retry,
    open_balancer,
)
from sbroker.queues import TimeoutQueue

A, B = "tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return autojump_clock


async def serve(broker: Broker, label: str, service: float) -> None:
    """One worker on ``broker``, ``service`` seconds per request."""
    while True:
        if isinstance(await broker.ask_r(label), Go):
            await trio.sleep(service)


async def test_server_killed_midrun_ejected_and_probed_back(
    clock: trio.testing.MockClock,
) -> None:
    # L4: in-flight requests of a killed server are answered Drop; new ones retried on
    # the other; E1 ejects it; after restart one probe (E3) brings it back.
    brokers = [Broker(ask=TimeoutQueue(timeout=None), meters=[BetterMeter()]) for _ in range(2)]
    servers = {A: FakeServer({"b": brokers[0]}), B: FakeServer({"b": brokers[1]})}
    connector = FakeConnector(servers)
    results: list[tuple[float, Any]] = []
    async with trio.open_nursery() as nursery:
        for broker, label in zip(brokers, "ab", strict=True):
            await nursery.start(broker.run)
            nursery.start_soon(serve, broker, label, 0.05)
        async with open_balancer(
            [A + "/b", B + "/b"], "round_robin", Ejection(after=3, base=1.0),
            connector=connector, rng=random.Random(1),
        ) as balancer:

            async def client() -> None:
                results.append((trio.current_time(), await balancer.ask()))

            async with trio.open_nursery() as clients:
                for _ in range(40):  # 200 requests/s against 40/s: a backlog builds
                    clients.start_soon(client)
                    await trio.sleep(0.005)
                await trio.sleep(0.05)
                info = balancer.endpoints()
                assert info[1].estimates[0] is not None  # L3: refreshed
                in_flight_b = info[1].in_flight
                assert in_flight_b > 0
                servers[B].kill()
                await trio.sleep(0.001)  # the broken requests fail before new ones start
                for _ in range(20):
                    clients.start_soon(client)
                    await trio.sleep(0.005)
            drops = [r for _, r in results if isinstance(r, Drop)]
            assert len(drops) == in_flight_b  # L4: maybe queued -> Drop, never retried
            assert len(results) == 60
            info = balancer.endpoints()
            assert info[1].state == "ejected"
            await trio.sleep(0.6)
            assert balancer.endpoints()[1].estimates == (None, None)  # L3: stale
            assert balancer.endpoints()[0].estimates[0] is not None
            servers[B].restart()
            opened = servers[B].opened
            await trio.sleep_until(info[1].ejected_until + 0.001)  # type: ignore[operator]
            calls = len(servers[B].calls)
            del results[:]
            async with trio.open_nursery() as clients:
                for _ in range(10):
                    clients.start_soon(client)
            assert balancer.endpoints()[1].state == "up"
            assert servers[B].opened == opened + 1
            assert servers[B].calls[calls:].count("ask") >= 1  # the probe, then the rest
            assert all(isinstance(r, Go) for _, r in results)
        nursery.cancel_scope.cancel()
    assert connector.open == 0


async def test_add_remove_cycles_leak_nothing(clock: trio.testing.MockClock) -> None:
    # D1: a removed remote endpoint's connection closes once nothing is in flight;
    # 500 add/remove cycles leave no connection and no task behind.
    broker = Broker()
    connector = FakeConnector({A: FakeServer({"b": broker, "c": broker})})
    async with open_balancer([], connector=connector) as balancer:
        assert balancer._nursery is not None
        baseline = len(balancer._nursery.child_tasks)
        for cycle in range(500):
            url = A + ("/b" if cycle % 2 else "/c")
            balancer.add(url)
            assert isinstance(await balancer.nb_ask(), Drop)
            assert connector.open == 1
            balancer.remove(url)
            await trio.sleep(0.001)
            assert connector.open == 0
        # an endpoint removed while a request is in flight keeps its connection until done
        balancer.add(A + "/b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(balancer.ask)
            await trio.sleep(0.01)
            balancer.remove(A + "/b")
            await trio.sleep(0.01)
            assert connector.open == 1
            assert isinstance(broker.nb_ask_r(), Go)
        await trio.sleep(0.001)
        assert connector.open == 0
        assert len(balancer._nursery.child_tasks) == baseline


async def test_refused_connection_retried_once_then_no_endpoint(
    clock: trio.testing.MockClock,
) -> None:
    # L4: refused before writing -> retried on another endpoint; both refused -> NoEndpoint.
    broker = Broker()
    connector = FakeConnector({A: FakeServer({"b": broker})})
    async with open_balancer(
        [A + "/b", B + "/b"], "round_robin", ejection=None, connector=connector
    ) as balancer:
        for _ in range(4):
            assert isinstance(await balancer.nb_ask(), Drop)
        assert [i.failures for i in balancer.endpoints()] == [0, 2]
        connector.servers[A].kill()
        # the open connection breaks: the request may have been written -> Drop
        assert isinstance(await balancer.nb_ask(), Drop)
        with pytest.raises(Exception, match="no endpoint") as caught:
            await balancer.nb_ask()
        assert set(caught.value.tried) == {A + "/b", B + "/b"}  # type: ignore[attr-defined]


class FlakySource(Endpoints):
    def __init__(self, failures: int, endpoints: list[str]) -> None:
        self.failures = failures
        self.endpoints = endpoints
        self.calls: list[float] = []

    async def get(self) -> list[str]:
        self.calls.append(trio.current_time())
        await trio.sleep(0.0001)
        if len(self.calls) <= self.failures:
            raise OSError("lookup failed")
        return self.endpoints

    def __repr__(self) -> str:
        return "FlakySource"


async def test_retry_schedule(clock: trio.testing.MockClock) -> None:
    # D2: after an error 1 s, then every 5 s for the first 5 minutes, then every 5 minutes.
    source = FlakySource(10**6, [])
    async with open_balancer(source, connector=FakeConnector({})) as balancer:
        await trio.sleep(1000)
        with pytest.raises(TimeoutError, match="FlakySource.*lookup failed"):
            await balancer.wait_ready(timeout=1)  # D3
    gaps = [round(b - a) for a, b in zip(source.calls, source.calls[1:], strict=False)]
    assert gaps[0] == 1
    assert set(gaps[1:61]) == {5}  # calls at 1, 6, ..., 296, 301
    assert gaps[61:] == [300, 300]  # 601, 901
    # a source that recovers: refreshed on the same phases
    source = FlakySource(3, [A + "/b"])
    start = trio.current_time()
    async with open_balancer(source, connector=FakeConnector({})) as balancer:
        await balancer.wait_ready(timeout=20)
        assert round(trio.current_time() - start) == 11
        assert [i.endpoint for i in balancer.endpoints()] == [A + "/b"]


async def test_file_endpoints_rewritten(tmp_path: Path) -> None:
    # D2: the file is re-read when it changes; survivors keep their state.
    path = tmp_path / "endpoints.txt"
    path.write_text(f"# brokers\n{A}/b\n\n{B}/b\n")
    brokers = {"b": Broker()}
    connector = FakeConnector({A: FakeServer(brokers), B: FakeServer(brokers)})
    with trio.fail_after(10):
        async with open_balancer(
            FileEndpoints(path, poll=0.01), "round_robin", connector=connector
        ) as balancer:
            await balancer.wait_ready()
            assert [i.endpoint for i in balancer.endpoints()] == [A + "/b", B + "/b"]
            await balancer.nb_ask()
            kept = balancer.endpoints()[1]
            path.write_text(f"{B}/b\nunix:///tmp/x.sock#b\n")
            while len(balancer.endpoints()) != 2 or balancer.endpoints()[0].endpoint != B + "/b":
                await trio.sleep(0.01)
            assert [i.endpoint for i in balancer.endpoints()] == [B + "/b", "unix:///tmp/x.sock#b"]
            assert balancer.endpoints()[0] == kept


class FakeRecord:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class FakeResolver:
    def __init__(self, records: dict[tuple[str, str], list[FakeRecord]]) -> None:
        self.records = records

    async def resolve(self, name: str, rdtype: str) -> list[FakeRecord]:
        await trio.lowlevel.checkpoint()
        if (name, rdtype) not in self.records:
            raise dns.resolver.NoAnswer()
        return self.records[(name, rdtype)]


async def test_dns_endpoints() -> None:
    # D2: SRV records first, else A/AAAA with the port.
    srv = FakeResolver({("_sb._tcp.x", "SRV"): [FakeRecord(target="h1.x.", port=7421)]})
    assert await DnsEndpoints("_sb._tcp.x", resolver=srv).get() == ["tcp://h1.x:7421/default"]
    plain = FakeResolver(
        {("x", "A"): [FakeRecord(address="10.0.0.1")], ("x", "AAAA"): [FakeRecord(address="::1")]}
    )
    assert await DnsEndpoints("x", 7421, broker="q", resolver=plain).get() == [
        "tcp://10.0.0.1:7421/q",
        "tcp://[::1]:7421/q",
    ]
    with pytest.raises(LookupError, match="no port"):
        await DnsEndpoints("x", resolver=plain).get()
    with pytest.raises(LookupError, match="no SRV, A or AAAA"):
        await DnsEndpoints("y", 1, resolver=plain).get()


def test_retry_parameters() -> None:
    assert Retry().delay(1, 0) == 1_000_000_000
    assert Retry().delay(0, 0) == 5_000_000_000
    assert Retry(regular=60.0).delay(2, 400 * 10**9) == 60_000_000_000
    with pytest.raises(ValueError, match="after_error"):
        Retry(after_error=0)


async def test_dns_endpoints_through_dnspython_on_trio() -> None:
    # D2: dnspython's asynchronous resolver, on trio, against a DNS responder on 127.0.0.1.
    import dns.asyncresolver
    import dns.message
    import dns.rrset

    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def respond() -> None:
        while True:
            data, peer = await sock.recvfrom(4096)
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            if dns.rdatatype.to_text(question.rdtype) == "SRV":
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "SRV", "0 0 7421 h1.example.")
                )
            await sock.sendto(response.to_wire(), peer)

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    with trio.fail_after(10), sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(respond)
            endpoints = await DnsEndpoints("_sb._tcp.example.", resolver=resolver).get()
            nursery.cancel_scope.cancel()
    assert endpoints == ["tcp://h1.example:7421/default"]
