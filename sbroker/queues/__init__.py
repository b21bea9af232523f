"""Queue policies: who waits, in what order, and when waiting has become pointless.

Each policy is an immutable configuration value; a host (broker or regulator)
creates one mutable state per queue from it. See :class:`QueuePolicy` to
write your own.
"""

from sbroker._types import AdaptiveOut, DropEnd, Out
from sbroker.queues._protocol import DropCallback, QueuePolicy, QueueState, Request
from sbroker.queues.adaptive import AdaptiveQueue
from sbroker.queues.codel import CodelQueue
from sbroker.queues.drop import DropQueue
from sbroker.queues.fair import FairQueue
from sbroker.queues.timeout import TimeoutQueue

__all__ = [
    "AdaptiveOut",
    "AdaptiveQueue",
    "CodelQueue",
    "DropCallback",
    "DropEnd",
    "DropQueue",
    "FairQueue",
    "Out",
    "QueuePolicy",
    "QueueState",
    "Request",
    "TimeoutQueue",
]
