"""The regulator's inlined OpenValve paths answer exactly as its generic valve paths.

The hot path of the regulator runs an OpenValve's ``ask`` and ``done`` (and
R6, R7 around them) inlined; any other valve goes through the valve protocol
(regulation.md V1-V5, R4-R9, R14). Two regulators take the same seeded
random trace of calls at the same MockClock times: one with an
``OpenValve``, one with the same valve behind a delegating custom valve
(which the regulator cannot inline). Every answer, size, length and the
final statistics, and what a meter would sample (M6), must be equal.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import Dropped, Go, Pending
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve, Regulator, ValveState
from sbroker.regulator._valve_protocol import Verdict


class DelegatingState:
    """An OpenValve's state behind a wrapper: the regulator sees a custom valve."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    def config_change(self, valve: Any, now: int) -> Verdict:
        return self.state.config_change(valve.valve, now)  # type: ignore[no-any-return]


class DelegatingValve:
    """A custom valve made of an :class:`OpenValve`."""

    def __init__(self, max_size: int | None) -> None:
        self.valve = OpenValve(max_size=max_size)

    def init(self, running: Mapping[Hashable, Any], now: int) -> tuple[ValveState, Verdict]:
        state, verdict = self.valve.init(running, now)
        return DelegatingState(state), verdict  # type: ignore[return-value]


def seen(answer: object, names: dict[Hashable, str]) -> object:
    """An answer with its permit named by the label of the call that got it."""
    if isinstance(answer, Go):
        return ("go", names.get(answer.ref, "?"), answer.relative_time, answer.sojourn_time)
    return answer


class Side:
    """One regulator and what it answered, by label."""

    def __init__(self, regulator: Regulator) -> None:
        self.regulator = regulator
        self.answers: dict[str, object] = {}
        self.refs: dict[str, Hashable] = {}  # label -> permit ref
        self.names: dict[Hashable, str] = {}
        self.leave: dict[str, trio.Event] = {}  # label -> set to leave its permit() block
        self.pendings: dict[str, Pending] = {}

    def got(self, label: str, answer: object) -> None:
        if isinstance(answer, Go):
            self.refs[label] = answer.ref
            self.names[answer.ref] = label
        self.answers[label] = seen(answer, self.names)

    async def ask(self, label: str) -> None:
        self.got(label, await self.regulator.ask(label))

    async def hold(self, label: str) -> None:
        self.leave[label] = leave = trio.Event()
        try:
            async with self.regulator.permit(label) as go:
                self.got(label, go)
                await leave.wait()
        except Dropped as dropped:
            self.got(label, dropped.drop)

    def observe(self) -> tuple[object, ...]:
        regulator = self.regulator
        pendings = {label: seen(p.result, self.names) for label, p in self.pendings.items()}
        now = round(trio.current_time() * 1e9)
        deadline = regulator._deadline()  # R4 on the hot path tests the timer: every wake is on it
        assert deadline is None or regulator._timer <= deadline
        sample = regulator._sample(now, 0)  # M6: what a meter would see (empty_time, open_time)
        return regulator.size(), regulator.len(), pendings, sample


async def run_trace(seed: int, clock: trio.testing.MockClock) -> None:
    rng = random.Random(seed)
    max_size = rng.choice([1, 2, 3, None])
    queue = TimeoutQueue(timeout=0.25)
    sides = (
        Side(Regulator(queue=queue, valve=OpenValve(max_size=max_size))),
        Side(Regulator(queue=queue, valve=DelegatingValve(max_size))),  # type: ignore[arg-type]
    )
    assert sides[0].regulator._open_valve is not None
    assert sides[1].regulator._open_valve is None
    async with trio.open_nursery() as nursery:
        for side in sides:
            await nursery.start(side.regulator.run)
        for step in range(60):
            label = f"{step}"
            op = rng.choice(
                ["jump", "ask", "ask", "hold", "hold", "done", "leave", "leave", "continue"]
                + ["nb_ask", "async_ask", "withdraw", "change", "unknown"]
            )
            jump = rng.choice([0.001, 0.01, 0.1, 0.3])
            ref_pick, new_max = rng.random(), rng.choice([0, 1, 2, 3, None])
            for side in sides:
                regulator = side.regulator
                held = sorted(side.refs)
                pick = held[int(ref_pick * len(held))] if held else None
                if op == "ask":
                    nursery.start_soon(side.ask, label)
                elif op == "hold":
                    nursery.start_soon(side.hold, label)
                elif op == "done" and pick is not None:
                    side.answers[label] = regulator.done(side.refs[pick])
                elif op == "leave":
                    inside = sorted(k for k, e in side.leave.items() if not e.is_set())
                    if inside:
                        side.leave[inside[int(ref_pick * len(inside))]].set()
                elif op == "continue" and pick is not None:
                    side.answers[label] = seen(regulator.continue_(side.refs[pick]), side.names)
                elif op == "nb_ask":
                    side.got(label, regulator.nb_ask(label))
                elif op == "async_ask":
                    side.pendings[label] = pending = regulator.async_ask(label)
                    if pending.result is not None:
                        side.got(label, pending.result)
                elif op == "withdraw":
                    waiting = sorted(k for k, p in side.pendings.items() if p.result is None)
                    if waiting:
                        side.answers[label] = side.pendings[waiting[0]].cancel()
                elif op == "change":
                    valve: Any = OpenValve(max_size=new_max)
                    if regulator._open_valve is None:
                        valve = DelegatingValve(new_max)
                    regulator.change_config(valve=valve)
                elif op == "unknown":
                    side.answers[label] = regulator.done(object())
            if op == "jump":
                clock.jump(jump)
            await trio.testing.wait_all_tasks_blocked()
            for side in sides:  # a granted pending names its permit by its label
                for pending_label, pending in side.pendings.items():
                    if isinstance(pending.result, Go) and pending_label not in side.refs:
                        side.got(pending_label, pending.result)
            assert sides[0].observe() == sides[1].observe(), (seed, step, op)
            assert sides[0].answers == sides[1].answers, (seed, step, op)
        for side in sides:
            for event in side.leave.values():
                event.set()
        await trio.testing.wait_all_tasks_blocked()
        first, second = (side.regulator.statistics() for side in sides)
        assert first == second
        assert sides[0].answers == sides[1].answers
        assert any(isinstance(a, tuple) and a[0] == "go" for a in sides[0].answers.values())
        for side in sides:
            side.regulator.close()


@pytest.mark.parametrize("seed", range(40))
def test_inlined_open_valve_answers_as_the_generic_path(seed: int) -> None:
    clock = trio.testing.MockClock()  # time moves only by the trace's jumps
    trio.run(run_trace, seed, clock, clock=clock)
