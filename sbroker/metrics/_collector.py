"""Prometheus metric families built from the hosts' ``statistics()`` at scrape time.

Theory of operation: nothing is recorded on the hot path. A scrape calls
``statistics()`` on every registered host (broker, regulator, pool: anything
with that method) and turns the frozen record into samples by its field names:

==================================  =============================================
field of the record                 metric
==================================  =============================================
``go``, ``drop`` (int)              counters ``sbroker_go_total``, ``sbroker_drop_total``
``sojourn_p50`` ... (int ns/None)   ``sbroker_sojourn_seconds{quantile="0.5"}``
``..._lag``, ``..._time`` (int ns)  gauge in seconds, ``sbroker_scheduling_lag_seconds``
other ``int``/``float``             gauge of the same name (``sbroker_waiting``)
``alarms`` (set of str)             ``sbroker_alarm{alarm="..."} 1`` per active alarm
a nested record (``ask``, ...)      its fields, labelled ``side="ask"``
``None``                            no sample (a ``None`` percentile: NaN)
==================================  =============================================

Every sample carries ``name`` (the name given to ``register``). The sojourn
percentiles cover the host's recent matches (``RECENT_MATCHES``), so they are
exported as quantile gauges, not as a cumulative histogram, which would need
every observation recorded on the hot path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import attrs
from prometheus_client.metrics_core import Metric

PREFIX = "sbroker_"
NS_PER_SECOND = 1_000_000_000
COUNTERS = frozenset({"go", "drop"})
PERCENTILE = re.compile(r"^(?P<base>\w+)_p(?P<digits>\d+)$")
NANOSECOND_SUFFIXES = ("_lag", "_time")

HELP = {
    "go": "Requests answered Go (matched) since the host started.",
    "drop": "Requests answered Drop since the host started.",
    "waiting": "Requests waiting in the queue now.",
    "size": "Permits or resources held now.",
    "sojourn_seconds": "Sojourn time of recent matches: nearest-rank quantiles.",
    "scheduling_lag_seconds": "How late the host's background task woke at its last wake-up.",
    "alarm": "1 for each active alarm of the host.",
}


class StatisticsHost(Protocol):
    """Anything :func:`sbroker.metrics.register` can export: a ``statistics()`` method.

    It returns a frozen attrs record (e.g. :class:`sbroker.BrokerStatistics`).
    """

    def statistics(self) -> Any:
        """A snapshot of the host as a frozen attrs record."""
        ...


def quantile(digits: str) -> str:
    """``"50"`` -> ``"0.5"``, ``"99"`` -> ``"0.99"``, ``"999"`` -> ``"0.999"``."""
    return f"{int(digits) / 10 ** max(2, len(digits)):g}"


class Families:
    """The metric families of one scrape, filled host by host, each name once."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def add(self, name: str, kind: str, labels: Mapping[str, str], value: float) -> None:
        """Add one sample of ``PREFIX + name`` (``kind``: ``"gauge"`` or ``"counter"``)."""
        family = self._families.get(name)
        if family is None:
            documentation = HELP.get(name, f"The {name} field of the host's statistics().")
            family = self._families[name] = Metric(PREFIX + name, documentation, kind)
        suffix = "_total" if kind == "counter" else ""
        family.add_sample(PREFIX + name + suffix, dict(labels), value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


def add_record(record: Any, labels: Mapping[str, str], families: Families) -> None:
    """Add the samples of one statistics record (see the module's table)."""
    for field in attrs.fields(type(record)):
        name, value = field.name, getattr(record, field.name)
        percentile = PERCENTILE.match(name)
        if attrs.has(type(value)):
            add_record(value, {**labels, "side": name}, families)
        elif isinstance(value, (set, frozenset)):
            for alarm in sorted(value):
                families.add("alarm", "gauge", {**labels, "alarm": str(alarm)}, 1)
        elif percentile is not None:
            seconds = math.nan if value is None else value / NS_PER_SECOND
            labelled = {**labels, "quantile": quantile(percentile["digits"])}
            families.add(f"{percentile['base']}_seconds", "gauge", labelled, seconds)
        elif isinstance(value, (int, float)):
            if name in COUNTERS:
                families.add(name, "counter", labels, value)
            elif name.endswith(NANOSECOND_SUFFIXES):
                families.add(f"{name}_seconds", "gauge", labels, value / NS_PER_SECOND)
            else:
                families.add(name, "gauge", labels, value)


def collect_hosts(hosts: Mapping[str, Any]) -> Iterator[Metric]:
    """The metric families of ``hosts`` (name -> host), read now."""
    families = Families()
    for name, host in hosts.items():
        add_record(host.statistics(), {"name": name}, families)
    return iter(families)


class HostsCollector:
    """A collector for one registry: the hosts registered there, by name."""

    def __init__(self) -> None:
        self.hosts: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        """Read every host's statistics now; called by the registry at each scrape."""
        return collect_hosts(self.hosts)


class HostTableCollector:
    """A collector over a live table of hosts, e.g. a service's, read at each scrape."""

    def __init__(self, table: Callable[[], Mapping[str, Any]]) -> None:
        self._table = table

    def collect(self) -> Iterator[Metric]:
        """Read the table, then every host's statistics, now."""
        return collect_hosts(self._table())
