"""Exceptions raised by brokers and regulators."""

from __future__ import annotations

import trio


class BrokerClosed(trio.ClosedResourceError):
    """A call was made on a closed broker or regulator."""


class Dropped(Exception):
    """A request was answered ``Drop``: raised by ``regulator.permit()``,
    ``broker.call()`` and ``pool.checkout()``.

    Attributes:
        drop: the :class:`~sbroker.Drop` answer, with its ``sojourn_time``.
    """

    def __init__(self, drop: object) -> None:
        super().__init__(drop)
        self.drop = drop


class RequestCancelled(Exception):
    """``Pending.wait()`` on a request that was cancelled before it was answered."""


class WorkerFailed(Exception):
    """``broker.call()``: the worker that took the job raised or was cancelled.

    The worker's exception is the ``__cause__``.
    """
