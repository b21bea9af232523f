"""The Balancer over two real servers on 127.0.0.1 through sbroker.client (balancing.md L1-L4, E3).

Both servers run in the test's trio run. One is killed mid-run (its serve task
cancelled: connections drop without answers): its in-flight requests are
answered Drop (L4), it is ejected (E1), and after it restarts on the same port
one probe (E3) brings it back.
"""

from __future__ import annotations

from typing import Any

import trio

from sbroker import Drop, Go
from sbroker.balance import Ejection, open_balancer
from sbroker.service.config import parse_config
from sbroker.service.listen import Address, bound_address, open_listeners
from sbroker.service.server import Service

TIMEOUT = 20

CONFIG = """
[brokers.default]
ask = { policy = "timeout", timeout = inf }
ask_r = { policy = "timeout", timeout = inf }
meters = [{ meter = "better" }]
"""


class KillableServer:
    """A service on 127.0.0.1 with in-process workers; ``kill`` cancels it abruptly."""

    def __init__(self, nursery: trio.Nursery, label: str) -> None:
        self._nursery = nursery
        self.label = label
        self.address = Address("tcp", "127.0.0.1", 0)
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.address.host}:{self.address.port}/default"

    async def start(self) -> None:
        listeners = await open_listeners([self.address])
        self.address = bound_address(listeners[0])
        self.service = Service(parse_config(CONFIG, "test.toml", base_dir="."))
        await self._nursery.start(self._run, self.service, listeners)

    async def _run(self, service: Service, listeners: Any, task_status: Any) -> None:
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(service.serve, listeners)
                broker = service.hosts.get("default")
                for _ in range(2):
                    nursery.start_soon(self._worker, broker)
                task_status.started()

    async def _worker(self, broker: Any) -> None:
        while True:
            if isinstance(await broker.ask_r(self.label), Go):
                await trio.sleep(0.005)

    def kill(self) -> None:
        assert self._scope is not None
        self._scope.cancel()


async def test_two_servers_one_killed_and_probed_back() -> None:
    results: list[Any] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            a, b = KillableServer(nursery, "a"), KillableServer(nursery, "b")
            await a.start()
            await b.start()
            async with open_balancer(
                [a.url, b.url], "round_robin", Ejection(after=2, base=0.3, max=0.3),
                connect_timeout=2.0,
            ) as balancer:
                await balancer.wait_ready()

                async def client(count: int) -> None:
                    for _ in range(count):
                        results.append(await balancer.ask())

                async with trio.open_nursery() as clients:
                    for _ in range(20):
                        clients.start_soon(client, 20)
                    while len(results) < 100:
                        await trio.sleep(0.001)
                    in_flight_b = balancer.endpoints()[1].in_flight
                    b.kill()
                served = [r.value for r in results if isinstance(r, Go)]
                drops = [r for r in results if isinstance(r, Drop)]
                assert len(results) == 400  # every request answered
                assert 1 <= len(drops) <= in_flight_b + 20  # L4: maybe queued -> Drop
                assert set(served) == {"a", "b"}
                info = balancer.endpoints()[1]
                assert info.state == "ejected" and info.failures >= 2
                assert balancer.endpoints()[0].estimates[0] is not None  # L3 over the wire
                # restart b on its port; once the ejection is over, one probe brings it back
                await b.start()
                assert info.ejected_until is not None
                await trio.sleep_until(info.ejected_until)
                results.clear()
                async with trio.open_nursery() as clients:
                    for _ in range(10):
                        clients.start_soon(client, 10)
                assert balancer.endpoints()[1].state == "up"
                assert all(isinstance(r, Go) for r in results)
                assert {r.value for r in results} == {"a", "b"}
            nursery.cancel_scope.cancel()
