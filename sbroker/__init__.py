"""sbroker: a sojourn-time matchmaking broker for trio.

Tasks that call :meth:`Broker.ask` (clients) are matched one-to-one with
tasks that call :meth:`Broker.ask_r` (workers, connections, resources). An
unmatched caller waits in its side's queue, whose policy
(:mod:`sbroker.queues`) decides when waiting has become pointless. Meters
(:mod:`sbroker.meters`) watch brokers and regulators; a
:class:`~sbroker.regulator.Regulator` (:mod:`sbroker.regulator`) limits how
many tasks run at once.

Every public name of the subpackages is re-exported here.
"""

from sbroker._broker import Broker, open_broker
from sbroker._errors import BrokerClosed, Dropped, RequestCancelled
from sbroker._pending import Pending
from sbroker._results import Drop, Go, NotFound, Stop
from sbroker._statistics import BrokerStatistics, SideStatistics
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
    "Meter",
    "MeterHost",
    "MeterState",
    "NotFound",
    "OpenValve",
    "OverloadMeter",
    "Pending",
    "Permit",
    "PieMeter",
    "Protector",
    "QueuePolicy",
    "QueueState",
    "RateValve",
    "Regulator",
    "RelativeValve",
    "Request",
    "RequestCancelled",
    "Sample",
    "SideStatistics",
    "Stop",
    "TimeoutQueue",
    "UnderloadMeter",
    "UpdateMeter",
    "Valve",
    "ValveState",
    "Verdict",
    "open_broker",
    "open_regulator",
]
