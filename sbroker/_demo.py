"""``python -m sbroker demo``: a worker pool behind a broker under a burst.

Clients arrive as a Poisson process at ``load`` times what the workers can
serve, for ``seconds`` seconds of real time; each worker serves one client at
a time for ``service`` seconds. The same burst is offered to one broker per
ask-queue policy, side by side in one event loop, and the table shows how
many clients each served and how long the served ones waited.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import attrs
import trio

from sbroker._broker import open_broker
from sbroker._results import Go
from sbroker.queues import AdaptiveQueue, CodelQueue, QueuePolicy, TimeoutQueue

NS_PER_MS = 1_000_000


@attrs.define
class Tally:
    """What one strategy's clients got."""

    name: str
    served_waits: list[int] = attrs.Factory(list)
    dropped: int = 0

    def percentile(self, fraction: float) -> float:
        """The ``fraction`` quantile of the served clients' waits, in ms (nearest rank)."""
        waits = sorted(self.served_waits)
        if not waits:
            return float("nan")
        rank = min(len(waits) - 1, max(0, round(fraction * len(waits)) - 1))
        return waits[rank] / NS_PER_MS


async def _worker(broker: object, service: float) -> None:
    while True:
        result = await broker.ask_r()  # type: ignore[attr-defined]
        if isinstance(result, Go):
            await trio.sleep(service)


async def _offer(
    policy: QueuePolicy, tally: Tally, workers: int, service: float, arrivals: Sequence[float]
) -> None:
    async with open_broker(ask=policy, ask_r=TimeoutQueue(timeout=None)) as broker:
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(_worker, broker, service)

            async def client() -> None:
                result = await broker.ask()
                if isinstance(result, Go):
                    tally.served_waits.append(result.sojourn_time)
                else:
                    tally.dropped += 1

            async with trio.open_nursery() as clients:
                start = trio.current_time()
                for at in arrivals:
                    await trio.sleep_until(start + at)
                    clients.start_soon(client)
            nursery.cancel_scope.cancel()


def poisson_arrivals(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times (s) of a Poisson process of ``rate`` per second over ``seconds``.

    Both must be finite and ``> 0`` (``ValueError`` otherwise: a ``nan`` or
    infinite window would never end).
    """
    for name, number in (("rate", rate), ("seconds", seconds)):
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {number!r}")
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return times
        times.append(t)


async def run_demo(
    seconds: float = 2.0, load: float = 2.0, workers: int = 4, service: float = 0.01, seed: int = 1
) -> list[Tally]:
    """Offer the same burst to each strategy at once; return their tallies."""
    arrivals = poisson_arrivals(load * workers / service, seconds, random.Random(seed))
    strategies: list[tuple[str, QueuePolicy]] = [
        ("TimeoutQueue(timeout=0.5)", TimeoutQueue(timeout=0.5)),
        ("CodelQueue(target=0.01, interval=0.1)", CodelQueue(target=0.01, interval=0.1)),
        (
            "CodelQueue(0.01, 0.1, max_len=40)",
            CodelQueue(target=0.01, interval=0.1, max_len=40),
        ),
        (
            "AdaptiveQueue(0.01, 0.1, timeout=0.5)",
            AdaptiveQueue(target=0.01, interval=0.1, timeout=0.5),
        ),
    ]
    tallies = [Tally(name) for name, _ in strategies]
    async with trio.open_nursery() as nursery:
        for (_, policy), tally in zip(strategies, tallies, strict=True):
            nursery.start_soon(_offer, policy, tally, workers, service, arrivals)
    return tallies


def format_table(tallies: Sequence[Tally]) -> str:
    """A small fixed-width table of served/dropped counts and wait percentiles (ms)."""
    header = f"{'ask queue':<40}{'served':>8}{'dropped':>9}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
    lines = [header, "-" * len(header)]
    for tally in tallies:
        lines.append(
            f"{tally.name:<40}{len(tally.served_waits):>8}{tally.dropped:>9}"
            f"{tally.percentile(0.5):>8.1f}{tally.percentile(0.9):>8.1f}"
            f"{tally.percentile(0.99):>8.1f}{tally.percentile(1.0):>8.1f}"
        )
    return "\n".join(lines)


def main(seconds: float = 2.0, load: float = 2.0) -> None:
    """Run the demo and print its table."""
    workers, service = 4, 0.01
    print(
        f"{workers} workers, {service * 1000:.0f} ms per client (capacity "
        f"{workers / service:.0f}/s); clients arrive at {load:g}x capacity for {seconds:g} s.\n"
        "Waits are the sojourn times of served clients, in milliseconds.\n"
    )
    tallies = trio.run(run_demo, seconds, load, workers, service)
    print(format_table(tallies))
