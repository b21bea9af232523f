"""The examples in examples/ and the demo run and do what their docs say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import trio
import trio.testing

import sbroker
from sbroker import _demo
from sbroker.__main__ import main as cli_main
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


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["demo", "--load", "0"])
    assert "--load" in capsys.readouterr().err
