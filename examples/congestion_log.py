"""A custom meter: remember the broker's relative time once per period.

The meter protocol is in ``sbroker.meters.Meter``/``MeterState``; see
docs/meters.md. Run it: ``python examples/congestion_log.py``.
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

import sbroker
from sbroker.meters import MeterHost, Sample


@attrs.frozen
class CongestionLog:
    """Append ``(time_s, relative_time_ms, ask_len, ask_r_len)`` every ``period`` seconds."""

    log: list[tuple[float, float, int, int]]
    period: float = 0.1

    def init(self, host: MeterHost, now: int) -> tuple[CongestionLogState, int]:
        return CongestionLogState(self), now


class CongestionLogState:
    """The meter's state on one broker: when the next entry is due."""

    def __init__(self, meter: CongestionLog) -> None:
        self._meter = meter
        self._due = 0

    def update(self, sample: Sample) -> int:
        if sample.time >= self._due:  # meters may be called early (after a burst)
            entry = (
                sample.time / 1e9,
                sample.relative_time / 1e6,
                sample.ask_len,
                sample.ask_r_len,
            )
            self._meter.log.append(entry)
            self._due = sample.time + round(self._meter.period * 1e9)
        return self._due

    def config_change(self, meter: CongestionLog, now: int) -> int:
        self._meter = meter
        return min(self._due, now + round(meter.period * 1e9))

    def close(self) -> None:
        pass


async def main() -> list[tuple[float, float, int, int]]:
    """Clients arrive faster than one worker serves them, then stop."""
    log: list[tuple[float, float, int, int]] = []
    async with sbroker.open_broker(meters=[CongestionLog(log, period=0.1)]) as broker:
        async with trio.open_nursery() as nursery:

            async def worker() -> None:
                while True:
                    if isinstance(await broker.ask_r(), sbroker.Go):
                        await trio.sleep(0.03)

            nursery.start_soon(worker)
            for _ in range(20):
                nursery.start_soon(broker.ask)
                await trio.sleep(0.02)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    return log


if __name__ == "__main__":
    entries = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    print(f"{'time s':>7} {'relative ms':>12} {'asks':>5} {'ask_rs':>7}")
    for time_s, relative_ms, asks, ask_rs in entries:
        print(f"{time_s:7.2f} {relative_ms:12.1f} {asks:5d} {ask_rs:7d}")
