"""Reconnect delays: exponential backoff with jitter, a sans-I/O value sequence."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delays between reconnect attempts: ``initial`` s, times ``factor`` each
    failure, at most ``maximum`` s, each spread by +-``jitter`` (a fraction).

    The defaults are 1 s, x1.6, +-20 %, 120 s. :meth:`reset` after a success.
    """

    initial: float = 1.0
    factor: float = 1.6
    jitter: float = 0.2
    maximum: float = 120.0
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    _next: float | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"initial must be in (0, maximum], got {self.initial!r}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    def next_delay(self) -> float:
        """The delay before the next attempt (s); grows until :meth:`reset`."""
        base = self.initial if self._next is None else self._next
        self._next = min(base * self.factor, self.maximum)
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``initial`` again."""
        self._next = None
