"""One queue of a host: its policy, the policy's state and last wake time.

Reconfiguration is prepared, then committed (ARCHITECTURE.md point 3):
:meth:`QueueSide.prepare` builds everything a change needs without touching
the running state and returns a :class:`PreparedChange`; the host commits the
changes of every part only once all of them were prepared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sbroker._results import Drop
from sbroker._time import now_ns
from sbroker._validators import check_factory
from sbroker.queues import QueuePolicy, QueueState, Request


def validate_policy(name: str, policy: object) -> QueuePolicy:
    """A queue policy argument must implement :class:`~sbroker.queues.QueuePolicy`."""
    check_factory(name, policy, QueuePolicy, 3, "a queue policy")
    return policy  # type: ignore[return-value]


def _discard(_request: Request, _now: int) -> None:
    """The drop callback of a trial state: its drops are never answered."""


def _stand_ins(requests: list[Request]) -> list[Request]:
    """Copies of ``requests`` for a trial state, which may write on what it holds.

    A FairQueue remembers each request's key on the request: a trial must not
    overwrite what the running state filed the real requests under.
    """
    copies = []
    for request in requests:
        copy = Request(request.send_time, request.value, request.tag)
        copy.seq = request.seq
        copies.append(copy)
    return copies


class QueueSide:
    """One queue of a broker or regulator.

    ``schedule(wake)`` tells the host's timer about a new wake time.
    ``abandon`` is :meth:`remove`, bound once for the requests of parked
    tasks; ``withdraw(request)`` is the host's ``Pending.cancel`` for this
    queue, set by the host (both shared by every request: no closure each).
    """

    __slots__ = (
        "_schedule",
        "_staged_drops",
        "abandon",
        "drops",
        "name",
        "policy",
        "state",
        "wake",
        "withdraw",
    )

    def __init__(
        self,
        name: str,
        policy: QueuePolicy,
        now: int,
        schedule: Callable[[int | None], None],
    ) -> None:
        self.name = name
        self._schedule = schedule
        self._staged_drops: list[Request] | None = None  # drops of a state being prepared
        self.drops = 0  # requests of this side answered Drop
        self.policy = policy
        self.state: QueueState
        self.state, self.wake = policy.init([], now, self.drop)
        self.abandon: Callable[[Request], None] = self.remove
        self.withdraw: Callable[[Any], bool] | None = None

    def drop(self, request: Request, now: int) -> None:
        """The policy dropped ``request``: answer it (queues.md Q4).

        While a new state is being prepared its drops are recorded instead,
        and answered only when the change is committed.
        """
        staged = self._staged_drops
        if staged is not None:
            staged.append(request)
            return
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

    def prepare(self, policy: QueuePolicy, now: int) -> PreparedChange:
        """Prepare live reconfiguration (api.md rule 3, queues.md Q7); change nothing yet.

        Another class: the new state is built from the queued requests, read
        with the state's optional ``snapshot()``, its drops recorded. A state
        without one (or whose ``snapshot()`` returns ``None``) is terminated
        and, if the new policy fails, rebuilt at once by the running policy
        from the same requests.
        The same class: a trial state of the new policy is built from copies
        of the queued requests and thrown away, so that a configuration the policy
        cannot take fails here; the running state adopts it at commit.
        Raises whatever the new policy raises; then nothing has changed.
        """
        snapshot = getattr(self.state, "snapshot", None)
        held = None if snapshot is None else snapshot()
        if type(policy) is type(self.policy):
            policy.init([] if held is None else _stand_ins(held), now, _discard)
            return PreparedChange(self, policy, now)
        if held is not None:
            return self._build(policy, held, now, restore=False)
        requests = self.state.terminate()
        try:
            return self._build(policy, requests, now, restore=True)
        except BaseException:
            self._restore(requests, now)
            raise

    def _build(
        self, policy: QueuePolicy, requests: list[Request], now: int, *, restore: bool
    ) -> PreparedChange:
        staged: list[Request] = []
        self._staged_drops = staged
        try:
            state, wake = policy.init(requests, now, self.drop)
        finally:
            self._staged_drops = None
        built = (state, wake, staged)
        return PreparedChange(self, policy, now, built, requests if restore else None)

    def _restore(self, requests: list[Request], now: int) -> None:
        """Rebuild the running policy's state from the requests a terminate handed over.

        Requests the running policy's own rules drop at once are answered ``Drop``.
        """
        self.state, wake = self.policy.init(requests, now, self.drop)
        self.woke(wake)

    def answer_all(self, now: int) -> None:
        """Answer every queued request ``Drop`` (closing), whatever the policy raises.

        If ``terminate`` raises, the state is drained with ``handle_out``
        instead; the first exception is re-raised once every request the
        state still hands out has been answered.
        """
        self.wake = None
        try:
            requests = self.state.terminate()
        except BaseException:
            self._drain(now)
            raise
        for request in requests:
            self.drop(request, now)

    def _drain(self, now: int) -> None:
        while True:
            item = self.state.handle_out(now)
            if item is None:
                return
            self.drop(item[0], now)


class PreparedChange:
    """A prepared queue reconfiguration: :meth:`commit` applies it, :meth:`abandon` drops it.

    A change to a policy of another class commits without calling user code:
    it swaps in the prepared state and answers its recorded drops. A change
    within the class calls the state's ``config_change`` at commit.
    """

    __slots__ = ("_built", "_now", "_policy", "_restore", "_side")

    def __init__(
        self,
        side: QueueSide,
        policy: QueuePolicy,
        now: int,
        built: tuple[QueueState, int | None, list[Request]] | None = None,
        restore: list[Request] | None = None,
    ) -> None:
        self._side = side
        self._policy = policy
        self._now = now
        self._built = built
        self._restore = restore

    @property
    def fallible(self) -> bool:
        """Whether :meth:`commit` runs user code (a same-class ``config_change``)."""
        return self._built is None

    def commit(self) -> None:
        """Apply the change."""
        side, now = self._side, self._now
        if self._built is None:
            wake = side.state.config_change(self._policy, now)
            side.policy = self._policy
            side.woke(wake)
            return
        state, wake, staged = self._built
        side.state = state
        side.policy = self._policy
        for request in staged:
            side.drop(request, now)
        side.woke(wake)

    def abandon(self) -> None:
        """Give the change up; a terminated state is rebuilt from its requests."""
        if self._restore is not None:
            self._side._restore(self._restore, self._now)
