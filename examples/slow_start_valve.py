"""A custom valve: let a pool grow by at most one task per ``period``.

The valve protocol is in ``sbroker.regulator.Valve``/``ValveState``; see
docs/regulator.md. Each operation gets ``now`` (int ns) and returns a
``Verdict(status, wake_at)``: may the next ask start at once, and when the
regulator should call ``timeout`` to ask again. Run it:
``python examples/slow_start_valve.py``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Literal

import attrs
import trio
import trio.testing

import sbroker
from sbroker.regulator import Verdict


@attrs.frozen
class SlowStartValve:
    """Open while fewer than ``max_size`` run and ``period`` has passed since the last start."""

    period: float = 0.1
    max_size: int = 8

    def init(self, running: Mapping[Hashable, Any], now: int) -> tuple[SlowStartState, Verdict]:
        state = SlowStartState(self, dict(running), now)
        return state, state.timeout(now)


class SlowStartState:
    """The running permits and the time of the last start."""

    def __init__(self, valve: SlowStartValve, running: dict[Hashable, Any], now: int) -> None:
        self._valve = valve
        self._running = running
        self._last_start = now - round(valve.period * 1e9)  # the first ask may start at once

    def _next_start(self) -> int:
        return self._last_start + round(self._valve.period * 1e9)

    def timeout(self, now: int) -> Verdict:
        if len(self._running) >= self._valve.max_size:
            return Verdict("closed")  # V3: full, no wake: a done() will re-open
        if now < self._next_start():
            return Verdict("closed", self._next_start())  # wake when the next start is due
        return Verdict("open")

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        open_time = self._next_start()
        self._running[ref] = owner
        self._last_start = now
        return open_time, self.timeout(now)

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        found = ref in self._running
        self._running.pop(ref, None)
        return found, self.timeout(now)

    def continue_(
        self, ref: Hashable, now: int
    ) -> tuple[Literal["go", "done", "not_found"], int | None, Verdict]:
        if ref not in self._running:
            return "not_found", None, self.timeout(now)
        if len(self._running) > self._valve.max_size:  # shrunk by config_change: stop one
            del self._running[ref]
            return "done", None, self.timeout(now)
        return "go", now, self.timeout(now)  # a running task keeps its permit

    def update(self, value: int, now: int) -> Verdict:
        return self.timeout(now)  # measurements do not matter to this valve

    def config_change(self, valve: SlowStartValve, now: int) -> Verdict:
        self._valve = valve
        return self.timeout(now)

    def size(self) -> int:
        return len(self._running)

    def open_time(self) -> int | None:
        if len(self._running) >= self._valve.max_size:
            return None
        return self._next_start()

    def terminate(self) -> dict[Hashable, Any]:
        running, self._running = self._running, {}
        return running


async def main() -> list[tuple[float, int]]:
    """Twenty workers ask at once; the valve lets one in every 100 ms, up to 8."""
    growth: list[tuple[float, int]] = []
    valve = SlowStartValve(period=0.1, max_size=8)
    async with sbroker.open_regulator(queue=sbroker.TimeoutQueue(timeout=None), valve=valve) as reg:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(reg.ask)
            for _ in range(10):
                await trio.sleep(0.1)
                growth.append((round(trio.current_time(), 3), reg.size()))
            nursery.cancel_scope.cancel()
    return growth


if __name__ == "__main__":
    for time_s, size in trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)):
        print(f"t={time_s:.1f}s running={size}")
