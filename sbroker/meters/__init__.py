"""Meters: observers of a broker or regulator that raise alarms, gate requests
or feed regulators from the host's samples. See :class:`Meter` to write your own.
"""

from sbroker._types import SideTargets
from sbroker.meters._protocol import Meter, MeterHost, MeterState, Protector, Sample
from sbroker.meters.better import BetterMeter, BetterSide
from sbroker.meters.overload import OverloadMeter
from sbroker.meters.pie import PieMeter, PieProtector, PieSide
from sbroker.meters.underload import UnderloadMeter
from sbroker.meters.update import UpdateMeter

__all__ = [
    "BetterMeter",
    "BetterSide",
    "Meter",
    "MeterHost",
    "MeterState",
    "OverloadMeter",
    "PieMeter",
    "PieProtector",
    "PieSide",
    "Protector",
    "Sample",
    "SideTargets",
    "UnderloadMeter",
    "UpdateMeter",
]
