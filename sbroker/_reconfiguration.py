"""Reconfiguration, prepared then committed (ARCHITECTURE.md point 3), and user errors.

``change_config`` asks each part it changes (a queue, the valve, the meters)
to *prepare* itself: build everything the change needs without touching the
running configuration. Only once every part is prepared are they committed.
:func:`reconfigure` runs that protocol; :func:`attempt` and
:func:`raise_first` let a host run every step of a commit or a close even
when user code raises in one of them, and raise afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

logger = logging.getLogger("sbroker")


class PreparedPart(Protocol):
    """One prepared part of a reconfiguration (a queue, the valve, the meters)."""

    @property
    def fallible(self) -> bool:
        """Whether :meth:`commit` runs user code that may raise."""
        ...

    def commit(self) -> None:
        """Apply the part."""
        ...

    def abandon(self) -> None:
        """Give the part up, leaving the running configuration as it was."""
        ...


def reconfigure(prepares: Iterable[Callable[[], PreparedPart]]) -> None:
    """Prepare every part, then commit them all.

    If a preparation raises, the parts prepared so far are abandoned and
    the exception propagates: nothing has changed. Parts whose commit runs
    user code that may refuse the change commit first, so that such a
    failure stops the change before any other part is applied; the meters
    (given last) commit last, raising only once they are all in place.
    """
    parts: list[PreparedPart] = []
    try:
        for prepare in prepares:
            parts.append(prepare())
    except BaseException:
        for part in reversed(parts):
            part.abandon()
        raise
    parts.sort(key=lambda part: not part.fallible)  # stable: the meters stay last
    for index, part in enumerate(parts):
        try:
            part.commit()
        except BaseException:
            for rest in parts[index + 1 :]:
                rest.abandon()
            raise


def attempt(step: Callable[..., object], now: int | None, errors: list[Exception]) -> None:
    """Run a step that calls user code (with ``now`` if given); collect what it raises."""
    try:
        if now is None:
            step()
        else:
            step(now)
    except Exception as exc:
        errors.append(exc)


def raise_first(errors: list[Exception]) -> None:
    """Re-raise the first collected exception; log the others on ``"sbroker"``."""
    if not errors:
        return
    for extra in errors[1:]:
        logger.error("also raised while closing or reconfiguring", exc_info=extra)
    raise errors[0]
