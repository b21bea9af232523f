"""sbroker: a sojourn-time matchmaking broker for trio.

Tasks that call :meth:`Broker.ask` (clients) are matched one-to-one with
tasks that call :meth:`Broker.ask_r` (workers, connections, resources). An
unmatched caller waits in its side's queue, whose policy
(:mod:`sbroker.queues`) decides when waiting has become pointless.
"""

from sbroker._broker import Broker, open_broker
from sbroker._errors import BrokerClosed, Dropped, RequestCancelled
from sbroker._pending import Pending
from sbroker._results import Drop, Go, NotFound, Stop

__all__ = [
    "Broker",
    "BrokerClosed",
    "Drop",
    "Dropped",
    "Go",
    "NotFound",
    "Pending",
    "RequestCancelled",
    "Stop",
    "open_broker",
]
