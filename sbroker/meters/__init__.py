"""Meters: observers of a broker or regulator that raise alarms, gate requests
or feed regulators from the host's samples. See :class:`Meter` to write your own.
"""

from sbroker.meters._protocol import Meter, MeterHost, MeterState, Protector, Sample

__all__ = ["Meter", "MeterHost", "MeterState", "Protector", "Sample"]
