"""The service's named brokers and regulators, and how a configuration is applied to them.

Applying a configuration (at start and on ``reload``, protocol.md section 7)
is prepared completely, then committed in one step that cannot fail:

1. *Prepare.* Every host table is turned into objects with
   :func:`~sbroker.service.config_maps.host_from_map`. A new regulator is
   created first (with the default configuration, not yet running), so that
   UpdateMeter targets can name it, then every host's full keyword arguments
   are built, absent parts taking api.md's defaults. A table that fails is
   reported under its name with the error; so is one whose UpdateMeter names
   a regulator that failed. Nothing running is touched.
2. *Commit.* Removed hosts are closed (their queued requests answered
   ``Drop``), new ones configured and started, changed ones reconfigured with
   ``change_config`` (nothing queued is lost). A name whose kind changed is
   removed, then added; if its new table fails, the old host keeps running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sbroker._broker import Broker
from sbroker._host import validate_meters
from sbroker.queues import TimeoutQueue
from sbroker.regulator import OpenValve, Regulator
from sbroker.service.config import HostTable, ServiceConfig
from sbroker.service.config_maps import host_from_map, host_to_map

__all__ = ["Host", "Hosts", "Plan", "host_parts"]

Host = Broker | Regulator

#: api.md's defaults, for a part a host table leaves out.
_DEFAULT_PARTS: dict[str, Callable[[], dict[str, Any]]] = {
    "broker": lambda: {"ask": TimeoutQueue(), "ask_r": TimeoutQueue(), "meters": ()},
    "regulator": lambda: {"queue": TimeoutQueue(), "valve": OpenValve(), "meters": ()},
}


def host_parts(host: Host) -> dict[str, Any]:
    """A running host's configuration as parts: ``{"ask": ..., "ask_r": ..., "meters": ...}``."""
    if isinstance(host, Broker):
        ask, ask_r, meters = host.config()
        return {"ask": ask, "ask_r": ask_r, "meters": meters}
    queue, valve, meters = host.config()
    return {"queue": queue, "valve": valve, "meters": meters}


def _kind(host: Host) -> str:
    return "broker" if isinstance(host, Broker) else "regulator"


@attrs.define
class Plan:
    """A prepared configuration change (see the module's docstring).

    ``added`` and ``changed`` map names to the host and the keyword arguments
    for its ``change_config``; ``removed`` are names to close; ``failed`` maps
    names to error messages.
    """

    added: dict[str, tuple[Host, dict[str, Any]]] = attrs.Factory(dict)
    changed: dict[str, tuple[Host, dict[str, Any]]] = attrs.Factory(dict)
    removed: list[str] = attrs.Factory(list)
    failed: dict[str, str] = attrs.Factory(dict)


class Hosts:
    """The named hosts of one service: one namespace for brokers and regulators."""

    def __init__(self) -> None:
        self._hosts: dict[str, Host] = {}
        self._names: dict[int, str] = {}  # id(host) -> name, for UpdateMeter targets

    def get(self, name: str) -> Host | None:
        """The host named ``name``, or ``None``."""
        return self._hosts.get(name)

    def names(self) -> dict[str, list[str]]:
        """``{"brokers": [...], "regulators": [...]}``, sorted."""
        return {
            "brokers": sorted(n for n, h in self._hosts.items() if isinstance(h, Broker)),
            "regulators": sorted(n for n, h in self._hosts.items() if isinstance(h, Regulator)),
        }

    def all(self) -> list[Host]:
        """Every host."""
        return list(self._hosts.values())

    def by_name(self) -> dict[str, Host]:
        """Every host by name (a copy: reloads do not change it)."""
        return dict(self._hosts)

    def regulator(self, name: str) -> Regulator:
        """The regulator named ``name``; ``LookupError`` if there is none."""
        host = self._hosts.get(name)
        if not isinstance(host, Regulator):
            raise LookupError(f"no regulator named {name!r}")
        return host

    def regulator_name(self, regulator: object) -> str:
        """The name of a regulator of this service (for an UpdateMeter's map)."""
        name = self._names.get(id(regulator))
        if name is None or self._hosts.get(name) is not regulator:
            raise TypeError(f"{regulator!r} is not a regulator of this service")
        return name

    def to_map(self, host: Host) -> dict[str, Any]:
        """A host's running configuration as a section 5 map."""
        return host_to_map(host_parts(host), regulator_name=self.regulator_name)

    def change_config(self, host: Host, data: Mapping[str, Any], where: str) -> None:
        """Reconfigure ``host`` from a (partial) map; ``TypeError``/``ValueError`` naming
        ``where`` when invalid, and then nothing changes."""
        kwargs = host_from_map(data, _kind(host), where, resolve_regulator=self.regulator)  # type: ignore[arg-type]
        host.change_config(**kwargs)

    # -- applying a configuration ----------------------------------------------------------

    def prepare(self, config: ServiceConfig) -> Plan:
        """Build everything ``config`` asks for, touching nothing running."""
        plan = Plan()
        tables = {table.name: table for table in config.hosts}
        for name, host in self._hosts.items():
            table = tables.get(name)
            if table is None or table.kind != _kind(host):
                plan.removed.append(name)
        fresh = {
            name: Regulator() if table.kind == "regulator" else Broker()
            for name, table in tables.items()
            if name in plan.removed or name not in self._hosts
        }

        def resolve(name: str) -> Regulator:
            host = fresh.get(name)
            if host is None and name not in plan.removed:
                host = self._hosts.get(name)
            if not isinstance(host, Regulator):
                raise LookupError(name)
            return host

        built: dict[str, tuple[dict[str, Any], set[str]]] = {}
        for name, table in tables.items():
            try:
                built[name] = self._build(table, resolve)
            except (TypeError, ValueError) as exc:
                plan.failed[name] = str(exc)
        self._fail_dependents(built, plan, tables)
        for name, (kwargs, _uses) in built.items():
            if name in fresh:
                plan.added[name] = (fresh[name], kwargs)
            elif kwargs != host_parts(self._hosts[name]):
                plan.changed[name] = (self._hosts[name], kwargs)
        # a kind change whose new table failed: the old host stays
        plan.removed = [name for name in plan.removed if name not in plan.failed]
        return plan

    @staticmethod
    def _build(
        table: HostTable, resolve: Callable[[str], Regulator]
    ) -> tuple[dict[str, Any], set[str]]:
        uses: set[str] = set()

        def recording(name: str) -> Regulator:
            uses.add(name)
            return resolve(name)

        kwargs = _DEFAULT_PARTS[table.kind]()
        kwargs |= host_from_map(table.data, table.kind, table.where, resolve_regulator=recording)
        try:
            kwargs["meters"] = validate_meters(kwargs["meters"])
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{table.where} meters: {exc}") from None
        return kwargs, uses

    @staticmethod
    def _fail_dependents(
        built: dict[str, tuple[dict[str, Any], set[str]]],
        plan: Plan,
        tables: Mapping[str, HostTable],
    ) -> None:
        """A host whose UpdateMeter names a failed regulator fails too (to a fixed point)."""
        while True:
            broken = {
                name: uses & plan.failed.keys()
                for name, (_kwargs, uses) in built.items()
                if uses & plan.failed.keys()
            }
            if not broken:
                return
            for name, failed in broken.items():
                plan.failed[name] = (
                    f"{tables[name].where} meters: regulator {sorted(failed)[0]!r} failed"
                )
                del built[name]

    def commit(self, plan: Plan, start: Callable[[Host], None]) -> dict[str, Any]:
        """Apply a prepared plan (it cannot fail); return the reload report."""
        for name in plan.removed:
            host = self._hosts.pop(name)
            self._names.pop(id(host), None)
            host.close()
        for name, (host, kwargs) in plan.added.items():
            host.change_config(**kwargs)
            self._hosts[name] = host
            self._names[id(host)] = name
            start(host)
        for _name, (host, kwargs) in plan.changed.items():
            host.change_config(**kwargs)
        return {
            "changed": sorted(plan.changed),
            "added": sorted(plan.added),
            "removed": sorted(plan.removed),
            "failed": dict(sorted(plan.failed.items())),
        }

    def close_all(self) -> None:
        """Close every host (S13): every queued request is answered ``Drop``."""
        for host in self._hosts.values():
            host.close()
