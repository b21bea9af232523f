"""The examples in examples/ and the demo run and do what their docs say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import trio
import trio.testing

import sbroker
from sbroker import Go, _demo
from sbroker.queues import QueuePolicy, QueueState, Request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_priority_policy_serves_most_urgent_first() -> None:
    example = load_example("priority_queue")
    assert trio.run(example.main) == ["page on-call", "reply to email", "tidy up"]


def test_custom_policy_satisfies_the_protocol_and_reconfigures() -> None:
    example = load_example("priority_queue")
    policy = example.PriorityQueue(max_len=2)
    assert isinstance(policy, QueuePolicy)
    dropped: list[Request] = []
    state, wake = policy.init([], 0, lambda request, now: dropped.append(request))
    assert isinstance(state, QueueState) and wake is None
    first, second, third = Request(0, 5), Request(1, 4), Request(2, 3)
    for request in (first, second, third):
        state.handle_in(request, request.send_time)
    assert dropped == [third] and len(state) == 2
    assert state.terminate() == [first, second]


async def test_custom_policy_behind_a_broker_with_live_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    example = load_example("priority_queue")
    async with sbroker.open_broker(ask=sbroker.queues.TimeoutQueue(timeout=None)) as broker:
        for value in (3, 1, 2):
            broker.async_ask(value)
        broker.change_config(ask=example.PriorityQueue())  # another class: requests handed over
        served = [broker.nb_ask_r().value for _ in range(3)]  # type: ignore[union-attr]
    assert served == [1, 2, 3]


async def test_demo_runs_and_tabulates(autojump_clock: trio.testing.MockClock) -> None:
    tallies = await _demo.run_demo(seconds=0.5, load=2.0)
    assert [tally.name for tally in tallies][0].startswith("TimeoutQueue")
    for tally in tallies:
        assert tally.served_waits and tally.dropped > 0  # 2x overload: some served, some not
    table = _demo.format_table(tallies)
    assert "served" in table and "p99" in table and len(table.splitlines()) == 2 + len(tallies)


def test_custom_meter_logs_relative_time() -> None:
    example = load_example("congestion_log")
    log = trio.run(example.main, clock=trio.testing.MockClock(autojump_threshold=0))
    times = [entry[0] for entry in log]
    assert times == sorted(times) and len(log) >= 8
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(times, times[1:]))  # one entry per period
    assert max(entry[1] for entry in log) > 0  # clients waited for the worker (M5: rt > 0)
    assert log[-1][1] < 0 and log[-1][3] == 1  # then the idle worker waited (rt < 0)


def test_custom_valve_grows_one_per_period() -> None:
    example = load_example("slow_start_valve")
    growth = trio.run(example.main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [size for _, size in growth] == [2, 3, 4, 5, 6, 7, 8, 8, 8, 8]


async def test_custom_valve_protocol_and_permits(autojump_clock: trio.testing.MockClock) -> None:
    example = load_example("slow_start_valve")
    valve = example.SlowStartValve(period=0.1, max_size=2)
    assert isinstance(valve, sbroker.Valve)
    async with sbroker.open_regulator(valve=valve) as regulator:
        first = regulator.async_ask()  # owner None: released all the same
        second = regulator.async_ask()
        await trio.sleep(0.15)
        assert isinstance(first.result, Go) and isinstance(second.result, Go)
        assert regulator.done(first.result.ref) is True
        assert regulator.done(first.result.ref) is False
        regulator.change_config(valve=example.SlowStartValve(period=0.1, max_size=0))
        assert regulator.continue_(second.result.ref) == sbroker.Stop(0)
        assert regulator.size() == 0
