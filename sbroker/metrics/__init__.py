"""Optional Prometheus metrics for brokers, regulators and pools.

Install with ``pip install 'sbroker[metrics]'`` (it needs ``prometheus_client``)::

    import sbroker.metrics

    sbroker.metrics.register(broker, name="db")  # any number of hosts
    await nursery.start(sbroker.metrics.serve_metrics, "127.0.0.1", 9421)

A scrape reads each host's ``statistics()`` at that moment (nothing is
recorded per request): queue lengths (``sbroker_waiting``), go and drop
counters (``sbroker_go_total``, ``sbroker_drop_total``), sojourn-time
quantiles of the recent matches (``sbroker_sojourn_seconds``), the scheduling
lag and the active alarms (``sbroker_alarm``), each labelled with the
``name`` given here and, for a broker, the ``side``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
except ImportError as error:  # the optional dependency is missing: say how to get it
    raise ImportError(
        "sbroker.metrics needs prometheus_client: pip install 'sbroker[metrics]'"
    ) from error

from sbroker.metrics._collector import HostsCollector, HostTableCollector, StatisticsHost
from sbroker.metrics._http import serve_metrics

__all__ = ["StatisticsHost", "register", "register_table", "serve_metrics", "unregister"]

_collectors: weakref.WeakKeyDictionary[CollectorRegistry, HostsCollector] = (
    weakref.WeakKeyDictionary()
)


def register(host: Any, *, name: str, registry: CollectorRegistry | None = None) -> None:
    """Export ``host`` (a Broker, Regulator, pool or any :class:`StatisticsHost`) as ``name``.

    The registry holds ``host`` until :func:`unregister`. Scrapes must run in
    the host's trio thread: serve them with :func:`serve_metrics`. Raises
    ``ValueError`` if ``name`` is empty or already registered in
    ``registry``, ``TypeError`` if ``host`` has no ``statistics()`` method.
    ``registry`` defaults to ``prometheus_client.REGISTRY``.
    """
    registry = REGISTRY if registry is None else registry
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not callable(getattr(host, "statistics", None)):
        raise TypeError(f"host must have a statistics() method, got {host!r}")
    collector = _collectors.get(registry)
    if collector is None:
        collector = HostsCollector()
        registry.register(collector)
        _collectors[registry] = collector
    if name in collector.hosts:
        raise ValueError(f"name {name!r} is already registered")
    collector.hosts[name] = host


def unregister(name: str, *, registry: CollectorRegistry | None = None) -> None:
    """Stop exporting the host registered as ``name``; ``ValueError`` if there is none."""
    registry = REGISTRY if registry is None else registry
    collector = _collectors.get(registry)
    if collector is None or name not in collector.hosts:
        raise ValueError(f"no host is registered as name {name!r}")
    del collector.hosts[name]
    if not collector.hosts:
        registry.unregister(collector)
        del _collectors[registry]


def register_table(
    table: Callable[[], Mapping[str, Any]], *, registry: CollectorRegistry | None = None
) -> None:
    """Export every host of a table that changes: ``table()`` is read at each scrape.

    ``table`` returns the hosts by name (anything with ``statistics()``), as
    the broker service does for ``sbroker serve --metrics``: hosts added or
    removed by a reload appear or disappear at the next scrape. ``registry``
    defaults to ``prometheus_client.REGISTRY``.
    """
    if not callable(table):
        raise TypeError(f"table must be a callable returning hosts by name, got {table!r}")
    (REGISTRY if registry is None else registry).register(HostTableCollector(table))
