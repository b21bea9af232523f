"""sbroker: a sojourn-time matchmaking broker for trio.

Tasks that call :meth:`Broker.ask` (clients) are matched one-to-one with
tasks that call :meth:`Broker.ask_r` (workers, connections, resources). An
unmatched caller waits in its side's queue, whose policy
(:mod:`sbroker.queues`) decides when waiting has become pointless. Meters
(:mod:`sbroker.meters`) watch brokers and regulators; a
:class:`~sbroker.regulator.Regulator` (:mod:`sbroker.regulator`) limits how
many tasks run at once. :meth:`Broker.call` and :meth:`Broker.serve` add
request/reply on top of a match, and :func:`open_pool` runs a connection pool
built from a broker and a regulator.

Every public name of the subpackages is re-exported here.
"""

from sbroker._broker import Broker, open_broker
from sbroker._errors import BrokerClosed, Dropped, RequestCancelled, WorkerFailed
from sbroker._pending import Pending
from sbroker._reply import Job
from sbroker._results import Drop, Go, NotFound, Stop
from sbroker._statistics import BrokerStatistics, RegulatorStatistics, SideStatistics
from sbroker._version import __version__ as __version__
from sbroker.meters import (
    BetterMeter,
    Meter,
    MeterHost,
    MeterState,
    OverloadMeter,
    PieMeter,
    Protector,
    Sample,
    UnderloadMeter,
    UpdateMeter,
)
from sbroker.pool import Pool, PoolStatistics, open_pool
from sbroker.queues import (
    AdaptiveQueue,
    CodelQueue,
    DropQueue,
    FairQueue,
    QueuePolicy,
    QueueState,
    Request,
    TimeoutQueue,
)
from sbroker.regulator import (
    CodelValve,
    OpenValve,
    Permit,
    RateValve,
    Regulator,
    RelativeValve,
    Valve,
    ValveState,
    Verdict,
    open_regulator,
)

__all__ = [
    "AdaptiveQueue",
    "BetterMeter",
    "Broker",
    "BrokerClosed",
    "BrokerStatistics",
    "CodelQueue",
    "CodelValve",
    "Drop",
    "DropQueue",
    "Dropped",
    "FairQueue",
    "Go",
    "Job",
    "Meter",
    "MeterHost",
    "MeterState",
    "NotFound",
    "OpenValve",
    "OverloadMeter",
    "Pending",
    "Pool",
    "PoolStatistics",
    "Permit",
    "PieMeter",
    "Protector",
    "QueuePolicy",
    "QueueState",
    "RateValve",
    "Regulator",
    "RegulatorStatistics",
    "RelativeValve",
    "Request",
    "RequestCancelled",
    "Sample",
    "SideStatistics",
    "Stop",
    "TimeoutQueue",
    "UnderloadMeter",
    "UpdateMeter",
    "WorkerFailed",
    "Valve",
    "ValveState",
    "Verdict",
    "open_broker",
    "open_pool",
    "open_regulator",
]
