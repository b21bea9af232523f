"""A custom queue policy: serve the waiting request with the smallest priority first.

The policy protocol is in ``sbroker.queues.QueuePolicy``/``QueueState``; see
docs/custom-policy.md. This policy never drops on time (every wake time is
``None``); with ``max_len`` it drops the arriving request when full.
Run it: ``python examples/priority_queue.py``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import attrs
import trio

import sbroker
from sbroker.queues import DropCallback, Request


@attrs.frozen
class PriorityQueue:
    """Serve the request whose ``priority(value)`` is smallest; ties oldest first."""

    priority: Callable[[Any], Any] = attrs.field(default=lambda value: value)
    max_len: int | None = None

    def init(
        self, requests: Sequence[Request], now: int, on_drop: DropCallback
    ) -> tuple[PriorityState, None]:
        state = PriorityState(self, on_drop)
        for request in requests:
            state.handle_in(request, now)
        return state, None


class PriorityState:
    """The mutable state: a heap of ``(priority, seq, request)``."""

    def __init__(self, policy: PriorityQueue, on_drop: DropCallback) -> None:
        self._policy = policy
        self._on_drop = on_drop
        self._heap: list[tuple[Any, int, Request]] = []

    def handle_in(self, request: Request, now: int) -> None:
        if self._policy.max_len is not None and len(self._heap) >= self._policy.max_len:
            self._on_drop(request, now)  # full: the arrival is dropped
        else:
            item = (self._policy.priority(request.value), request.seq, request)
            heapq.heappush(self._heap, item)

    def handle_out(self, now: int) -> tuple[Request, None] | None:
        return (heapq.heappop(self._heap)[2], None) if self._heap else None

    def fq_out(self, now: int) -> tuple[Request | None, int | None]:
        item = self.handle_out(now)
        return item if item is not None else (None, now)

    def handle_timeout(self, now: int) -> None:
        return None

    def handle_cancel(self, tag: Hashable, now: int) -> tuple[int, None]:
        kept = [item for item in self._heap if item[2].tag != tag]
        removed = len(self._heap) - len(kept)
        heapq.heapify(kept)
        self._heap = kept
        return removed, None

    def remove(self, request: Request, now: int) -> None:
        self._heap = [item for item in self._heap if item[2] is not request]
        heapq.heapify(self._heap)

    def config_change(self, policy: PriorityQueue, now: int) -> None:
        requests = self.terminate()
        self._policy = policy
        for request in requests:
            self.handle_in(request, now)

    def __len__(self) -> int:
        return len(self._heap)

    def send_time(self) -> int | None:
        return min((item[2].send_time for item in self._heap), default=None)

    def terminate(self) -> list[Request]:
        requests = sorted((item[2] for item in self._heap), key=lambda r: (r.send_time, r.seq))
        self._heap = []
        return requests


async def main() -> list[str]:
    """Three jobs wait; one worker serves the most urgent first."""
    served = []
    async with sbroker.open_broker(ask=PriorityQueue(priority=lambda job: job[0])) as broker:
        for job in [(3, "tidy up"), (1, "page on-call"), (2, "reply to email")]:
            broker.async_ask(job)
        for _ in range(3):
            match broker.nb_ask_r():
                case sbroker.Go(value=(_, job)):
                    served.append(job)
    return served


if __name__ == "__main__":
    print(trio.run(main))
