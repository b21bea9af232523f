"""sbroker.metrics: Prometheus samples read from the hosts' statistics() at scrape time."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

import sbroker
import sbroker.metrics
from sbroker import BrokerStatistics, Drop, Go, SideStatistics, open_broker, open_regulator
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve

MS = 1_000_000


def sample(registry: CollectorRegistry, metric: str, /, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


async def test_broker_lengths_counters_quantiles_and_lag(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = CollectorRegistry()
    async with open_broker(ask=TimeoutQueue(timeout=0.05)) as broker:
        sbroker.metrics.register(broker, name="db", registry=registry)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(broker.ask)
            await trio.sleep(0.01)
            assert sample(registry, "sbroker_waiting", name="db", side="ask") == 3
            assert isinstance(await broker.ask_r(), Go)  # the oldest ask waited 10 ms
        assert isinstance(broker.nb_ask(), Drop)
        stats = broker.statistics()
        assert sample(registry, "sbroker_waiting", name="db", side="ask") == 0
        assert sample(registry, "sbroker_go_total", name="db", side="ask") == stats.ask.go == 1
        assert sample(registry, "sbroker_drop_total", name="db", side="ask") == stats.ask.drop
        assert stats.ask.drop == 3  # two timed out, one refused at the door
        p99 = sample(registry, "sbroker_sojourn_seconds", name="db", side="ask", quantile="0.99")
        assert p99 == pytest.approx(0.01)
        ask_r_p50 = sample(
            registry, "sbroker_sojourn_seconds", name="db", side="ask_r", quantile="0.5"
        )
        assert ask_r_p50 == 0.0  # the ask_r found the ask waiting
        lag = sample(registry, "sbroker_scheduling_lag_seconds", name="db")
        assert lag == stats.scheduling_lag / 1e9
    text = generate_latest(registry).decode()
    assert "# TYPE sbroker_go_total counter" in text and "# HELP sbroker_waiting" in text


async def test_regulator_shows_size_and_waiting_asks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = CollectorRegistry()
    async with open_regulator(queue=TimeoutQueue(timeout=None), valve=OpenValve(2)) as regulator:
        sbroker.metrics.register(regulator, name="workers", registry=registry)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(regulator.ask)
            await trio.sleep(0.01)
            assert sample(registry, "sbroker_size", name="workers") == regulator.size() == 2
            waiting = sample(registry, "sbroker_waiting", name="workers", side="ask")
            assert waiting == regulator.len() == 1
            nursery.cancel_scope.cancel()


@attrs.frozen
class PoolStatistics:
    """The shape of a pool's statistics(): flat fields, percentiles, alarms."""

    size: int
    idle: int
    in_use: int
    waiting: int
    go: int
    drop: int
    sojourn_p50: int | None
    sojourn_p99: int | None
    alarms: frozenset[str]


class FakePool:
    def __init__(self, statistics: object) -> None:
        self.snapshot = statistics

    def statistics(self) -> object:
        return self.snapshot


def test_any_statistics_host_is_exported_by_its_field_names() -> None:
    registry = CollectorRegistry()
    pool = FakePool(PoolStatistics(4, 1, 3, 7, 10, 2, 5 * MS, None, frozenset({"slow"})))
    sbroker.metrics.register(pool, name="pool", registry=registry)
    assert sample(registry, "sbroker_size", name="pool") == 4
    assert sample(registry, "sbroker_in_use", name="pool") == 3
    assert sample(registry, "sbroker_go_total", name="pool") == 10
    assert sample(registry, "sbroker_drop_total", name="pool") == 2
    assert sample(registry, "sbroker_sojourn_seconds", name="pool", quantile="0.5") == 0.005
    p99 = sample(registry, "sbroker_sojourn_seconds", name="pool", quantile="0.99")
    assert p99 is not None and math.isnan(p99)  # no matches yet
    assert sample(registry, "sbroker_alarm", name="pool", alarm="slow") == 1
    pool.snapshot = attrs.evolve(pool.snapshot, alarms=frozenset())  # read at each scrape
    assert sample(registry, "sbroker_alarm", name="pool", alarm="slow") is None


def test_broker_alarms_and_several_hosts_in_one_registry() -> None:
    registry = CollectorRegistry()
    side = SideStatistics(0, 0, 0, None, None, None)
    alarmed = BrokerStatistics(side, side, 0, frozenset({"message_queue_slow"}))
    sbroker.metrics.register(FakePool(alarmed), name="a", registry=registry)
    sbroker.metrics.register(FakePool(alarmed), name="b", registry=registry)
    for name in ("a", "b"):
        assert sample(registry, "sbroker_alarm", name=name, alarm="message_queue_slow") == 1
    sbroker.metrics.unregister("a", registry=registry)
    assert sample(registry, "sbroker_alarm", name="a", alarm="message_queue_slow") is None
    sbroker.metrics.unregister("b", registry=registry)
    assert generate_latest(registry) == b""
    sbroker.metrics.register(FakePool(alarmed), name="a", registry=registry)  # again


def test_bad_registrations_name_the_parameter() -> None:
    registry = CollectorRegistry()
    side = SideStatistics(0, 0, 0, None, None, None)
    host = FakePool(BrokerStatistics(side, side, 0, frozenset()))
    with pytest.raises(ValueError, match="name"):
        sbroker.metrics.register(host, name="", registry=registry)
    with pytest.raises(TypeError, match="host"):
        sbroker.metrics.register(object(), name="x", registry=registry)
    sbroker.metrics.register(host, name="x", registry=registry)
    with pytest.raises(ValueError, match="'x' is already registered"):
        sbroker.metrics.register(host, name="x", registry=registry)
    with pytest.raises(ValueError, match="'y'"):
        sbroker.metrics.unregister("y", registry=registry)


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
    return received


async def test_http_endpoint_on_loopback() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(30):
        async with open_broker() as broker, trio.open_nursery() as nursery:
            sbroker.metrics.register(broker, name="web", registry=registry)
            listeners = await nursery.start(sbroker.metrics.serve_metrics, "127.0.0.1", 0, registry)
            port = listeners[0].socket.getsockname()[1]
            broker.nb_ask()
            ok = await http_get(port, "/metrics")
            assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b'sbroker_drop_total{name="web",side="ask"} 1.0' in ok
            assert (await http_get(port, "/")).startswith(b"HTTP/1.1 404")
            nursery.cancel_scope.cancel()


class BrokenHost:
    def statistics(self) -> object:
        raise RuntimeError("broken statistics")


def test_answers_to_odd_requests_and_a_failing_host(caplog: pytest.LogCaptureFixture) -> None:
    from sbroker.metrics._http import answer

    registry = CollectorRegistry()
    sbroker.metrics.register(BrokenHost(), name="broken", registry=registry)
    assert answer(None, registry).startswith(b"HTTP/1.1 431 ")
    assert answer(b"POST /metrics HTTP/1.1\r\n\r\n", registry).startswith(b"HTTP/1.1 405 ")
    assert answer(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", registry).startswith(b"HTTP/1.1 500 ")
    assert "collecting failed" in caplog.text


def test_without_prometheus_client_the_import_says_what_to_install() -> None:
    code = "import sys; sys.modules['prometheus_client'] = None; import sbroker.metrics"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(sbroker.__file__).resolve().parent.parent)},
    )
    assert completed.returncode == 1
    assert "pip install 'sbroker[metrics]'" in completed.stderr


def test_a_table_of_hosts_is_read_at_each_scrape() -> None:
    registry = CollectorRegistry()
    record = PoolStatistics(4, 1, 3, 7, 10, 2, 5 * MS, None, frozenset())
    table: dict[str, object] = {"a": FakePool(record)}
    sbroker.metrics.register_table(lambda: table, registry=registry)
    assert sample(registry, "sbroker_size", name="a") == 4
    table["b"] = table.pop("a")  # e.g. a service reload renamed it
    assert sample(registry, "sbroker_size", name="a") is None
    assert sample(registry, "sbroker_size", name="b") == 4
    with pytest.raises(TypeError, match="table"):
        sbroker.metrics.register_table(table, registry=registry)  # type: ignore[arg-type]
