"""Type aliases for the string and dict parameters of the configuration values.

They let a type checker reject ``TimeoutQueue(out="sideways")`` or
``PieMeter(ask={"taget": 0.1})`` before the constructor's own validation
(which still runs, for untyped callers) would.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Out = Literal["fifo", "lifo"]
"""``out`` of DropQueue, TimeoutQueue and CodelQueue: which end is served."""

AdaptiveOut = Literal["fifo", "lifo", "adaptive"]
"""``out`` of AdaptiveQueue, which may also switch between the two by itself."""

DropEnd = Literal["head", "tail"]
"""``drop``: which end is dropped when ``max_len`` is reached."""


class SideTargets(TypedDict, total=False):
    """The per-side parameters of a meter (``PieMeter(ask=..., ask_r=...)``), in seconds.

    Both keys are optional; a meter fills in its defaults.
    """

    target: float
    interval: float
