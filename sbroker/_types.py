"""Type aliases for the string and dict parameters of the configuration values.

They let a type checker reject ``TimeoutQueue(out="sideways")`` or
``PieMeter(ask={"taget": 0.1})`` before the constructor's own validation
(which still runs, for untyped callers) would.
"""

from __future__ import annotations

from typing import Literal, TypedDict

#: ``out`` of DropQueue, TimeoutQueue and CodelQueue: which end is served.
Out = Literal["fifo", "lifo"]

#: ``out`` of AdaptiveQueue, which may also switch between the two by itself.
AdaptiveOut = Literal["fifo", "lifo", "adaptive"]

#: ``drop``: which end is dropped when ``max_len`` is reached.
DropEnd = Literal["head", "tail"]


class SideTargets(TypedDict, total=False):
    """The per-side parameters of a meter (``PieMeter(ask=..., ask_r=...)``), in seconds.

    Both keys are optional; a meter fills in its defaults.
    """

    target: float
    interval: float
