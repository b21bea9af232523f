"""The regulator and its valves: how many tasks may run at once.

A valve decides whether one more task may start; see :class:`Valve` to write
your own.
"""

from sbroker.regulator._regulator import Permit, Regulator, open_regulator
from sbroker.regulator._valve_protocol import Valve, ValveState, Verdict
from sbroker.regulator.codel_valve import CodelValve
from sbroker.regulator.open_valve import OpenValve
from sbroker.regulator.rate_valve import RateValve
from sbroker.regulator.relative_valve import RelativeValve

__all__ = [
    "CodelValve",
    "OpenValve",
    "Permit",
    "RateValve",
    "Regulator",
    "RelativeValve",
    "Valve",
    "ValveState",
    "Verdict",
    "open_regulator",
]
