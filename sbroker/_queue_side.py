"""One queue of a host: its policy, the policy's state and last wake time."""

from __future__ import annotations

from collections.abc import Callable

from sbroker._results import Drop
from sbroker._time import now_ns
from sbroker._validators import check_factory
from sbroker.queues import QueuePolicy, QueueState, Request


def validate_policy(name: str, policy: object) -> QueuePolicy:
    """A queue policy argument must implement :class:`~sbroker.queues.QueuePolicy`."""
    check_factory(name, policy, QueuePolicy, 3, "a queue policy")
    return policy  # type: ignore[return-value]


class QueueSide:
    """One queue of a broker or regulator.

    ``schedule(wake)`` tells the host's timer about a new wake time.
    """

    __slots__ = ("_schedule", "drops", "name", "policy", "sign", "state", "wake")

    def __init__(
        self, name: str, policy: QueuePolicy, now: int, schedule: Callable[[int | None], None]
    ) -> None:
        self.name = name
        self._schedule = schedule
        self.drops = 0  # requests of this side answered Drop
        self.sign = -1 if name == "ask_r" else 1  # how its waits are signed in recent matches
        self.policy = policy
        self.state: QueueState
        self.state, self.wake = policy.init([], now, self.drop)

    def drop(self, request: Request, now: int) -> None:
        """The policy dropped ``request``: answer it (queues.md Q4)."""
        self.drops += 1
        request.answer(Drop(now - request.send_time))  # type: ignore[attr-defined]

    def woke(self, wake: int | None) -> None:
        """Record the wake time the policy just returned."""
        self.wake = wake
        self._schedule(wake)

    def enqueue(self, request: Request, now: int) -> None:
        """Hand ``request`` to the policy."""
        self.woke(self.state.handle_in(request, now))

    def remove(self, request: Request) -> None:
        """The caller of ``request`` gave up (trio cancellation)."""
        self.woke(self.state.remove(request, now_ns()))

    def change(self, policy: QueuePolicy, now: int) -> None:
        """Live reconfiguration (api.md rule 3, queues.md Q7)."""
        if type(policy) is type(self.policy):
            wake = self.state.config_change(policy, now)
        else:
            requests = self.state.terminate()
            self.state, wake = policy.init(requests, now, self.drop)
        self.policy = policy
        self.woke(wake)

    def answer_all(self, now: int) -> None:
        """Answer every queued request ``Drop`` (closing)."""
        for request in self.state.terminate():
            self.drop(request, now)
        self.wake = None
