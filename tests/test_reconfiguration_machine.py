"""Hypothesis: rejected change_config calls, at random points, change nothing.

A broker's ask queue is driven by async asks, cancels, serves (``nb_ask_r``),
time advances and valid reconfigurations among fifo policies that never drop,
beside a model list. At random points ``change_config`` is given a
configuration that raises: a FairQueue key function that raises for a queued
value, a CodelQueue whose state cannot take its target, custom policies whose
``init`` or ``config_change`` raises, a meter whose ``init`` raises next to a
queue part that would drop everything. After each rejection ``config()`` and
the model's queue (contents, and order as served) are unchanged.
api.md rule 3, queues.md Q7, regulation.md M2; issue 9 defects 1 and 2.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from raising_parts import (
    Boom,
    FlakyQueue,
    RaisingInitQueue,
    RaisingMeter,
    RecordingMeter,
    raising_key,
    unchecked,
)

from sbroker import Broker, Drop, Go, Pending
from sbroker.meters import OverloadMeter
from sbroker.queues import CodelQueue, DropQueue, FairQueue, TimeoutQueue


def one_key(_value: object) -> int:
    """Every value in one sub-queue: a FairQueue that serves fifo."""
    return 0


FIFO_POLICIES = [
    TimeoutQueue(timeout=None),
    DropQueue(),
    FlakyQueue(),
    CodelQueue(target=1e6, interval=1.0),
    FairQueue(queue=DropQueue(), key=one_key),
]
METER_SETS: list[tuple[Any, ...]] = [(), (OverloadMeter(),), (RecordingMeter(),)]
REJECTIONS = ["fair_key", "codel_init", "custom_init", "custom_change", "meter_init"]


class ReconfigurationMachine(RuleBasedStateMachine):
    """Broker ask queue vs. a list of (value, pending) in service order."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = trio.lowlevel.current_clock()
        assert isinstance(self.clock, trio.testing.MockClock)
        self.broker = Broker(ask=TimeoutQueue(timeout=None))
        self.model: list[tuple[int, Pending]] = []
        self.next_value = 0

    @rule()
    def ask(self) -> None:
        pending = self.broker.async_ask(self.next_value)
        assert pending.result is None
        self.model.append((self.next_value, pending))
        self.next_value += 1

    @rule()
    def serve(self) -> None:
        result = self.broker.nb_ask_r()
        if not self.model:
            assert result == Drop(0)
            return
        value, pending = self.model.pop(0)
        assert isinstance(result, Go) and result.value == value
        assert isinstance(pending.result, Go)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.model) - 1))
        _value, pending = self.model.pop(index)
        assert pending.cancel() is True

    @rule(seconds=st.floats(0, 5))
    def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)

    @rule(policy=st.sampled_from(FIFO_POLICIES), meters=st.sampled_from(METER_SETS))
    def change(self, policy: Any, meters: tuple[Any, ...]) -> None:
        self.broker.change_config(ask=policy, meters=meters)
        assert self.broker.config()[0] == policy

    @rule(kind=st.sampled_from(REJECTIONS), data=st.data())
    def rejected_change(self, kind: str, data: st.DataObject) -> None:
        running = self.broker.config()[0]
        change: dict[str, Any]
        if kind == "fair_key":
            if not self.model:
                return  # an empty queue calls no key: the change would succeed
            bad = data.draw(st.sampled_from([value for value, _ in self.model]))
            change = {"ask": FairQueue(queue=DropQueue(), key=raising_key(bad))}
        elif kind == "codel_init":
            change = {"ask": unchecked(CodelQueue(), target=1e300)}
        elif kind == "custom_init":
            change = {"ask": RaisingInitQueue()}
        elif kind == "custom_change":
            if type(running) is not FlakyQueue:
                return  # only a state of the same class runs config_change
            change = {"ask": FlakyQueue(fail_change=True)}
        else:
            change = {"ask": DropQueue(max_len=0), "meters": [OverloadMeter(), RaisingMeter()]}
        before = self.broker.config()
        try:
            self.broker.change_config(**change)
        except (Boom, OverflowError, ValueError):
            pass
        else:
            raise AssertionError(f"{change} was accepted")
        assert self.broker.config() == before

    @invariant()
    def queue_unchanged(self) -> None:
        assert self.broker.len() == len(self.model)
        assert all(pending.result is None for _value, pending in self.model)

    def teardown(self) -> None:
        while self.model:
            self.serve()
        self.broker.close()


def test_rejected_changes_change_nothing() -> None:
    async def machine() -> None:
        run_state_machine_as_test(
            ReconfigurationMachine,
            settings=settings(max_examples=30, stateful_step_count=40, deadline=None),
        )

    trio.run(machine, clock=trio.testing.MockClock(autojump_threshold=0))
