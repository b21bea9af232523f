"""The discovery loop: fetch a source on its retry schedule, reconcile the set (D2, D3).

Like cets' discovery there are two phases: during the first ``startup``
seconds of the balancer's life the source is fetched every ``early`` seconds,
afterwards every ``regular`` seconds. A failed fetch is retried ``after_error``
seconds later; further consecutive failures follow the phase's period. One
task runs the loop, so at most one lookup is ever in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from sbroker import _validators
from sbroker._time import now_ns
from sbroker._units import to_ns
from sbroker.balance.endpoints import Endpoints

__all__ = ["Discovery", "Retry"]

logger = logging.getLogger("sbroker.balance")


@attrs.frozen
class Retry:
    """The fetch schedule of an endpoint source (seconds, all ``> 0``).

    Args:
        after_error: delay before retrying a fetch that just failed.
        early: the period during the startup phase (also for repeated failures).
        startup: how long the startup phase lasts from the balancer's start.
        regular: the period after the startup phase.
    """

    after_error: float = attrs.field(default=1.0, validator=_validators.duration(positive=True))
    early: float = attrs.field(default=5.0, validator=_validators.duration(positive=True))
    startup: float = attrs.field(default=300.0, validator=_validators.duration())
    regular: float = attrs.field(default=300.0, validator=_validators.duration(positive=True))

    def delay(self, errors: int, age: int) -> int:
        """ns until the next fetch, after ``errors`` consecutive failures, ``age`` ns in."""
        if errors == 1:
            return to_ns(self.after_error)
        return to_ns(self.early if age < to_ns(self.startup) else self.regular)


class Discovery:
    """Runs one source for a balancer: fetch, reconcile, wait; ``wait_ready`` (D3)."""

    def __init__(
        self, source: Endpoints, retry: Retry, reconcile: Callable[[list[Any]], None]
    ) -> None:
        self._source = source
        self._retry = retry
        self._reconcile = reconcile
        self._ready = trio.Event()
        self.last_error: BaseException | None = None
        self.lookups = 0

    async def run(self) -> None:
        """The loop; runs until cancelled (or, for a fixed source, until its first success)."""
        start = now_ns()
        errors = 0
        while True:
            self.lookups += 1
            try:
                endpoints = list(await self._source.get())
            except Exception as exc:
                errors += 1
                self.last_error = exc
                logger.warning("endpoint source %r failed: %r", self._source, exc)
            else:
                errors = 0
                self._reconcile(endpoints)
                if endpoints:
                    self._ready.set()
                if not self._source.refresh:
                    return
            delay = self._retry.delay(errors, now_ns() - start)
            with trio.move_on_after(delay / 1e9):
                await self._source.wait_changed()

    async def wait_ready(self, timeout: float) -> None:
        """Return once a fetch produced at least one endpoint; TimeoutError after ``timeout``."""
        with trio.move_on_after(timeout):
            await self._ready.wait()
            return
        raise TimeoutError(
            f"endpoint source {self._source!r} produced no endpoint in {timeout} s; "
            f"last error: {self.last_error!r}"
        )
