"""Configuration values as maps (protocol.md section 5), to and from the config objects.

One function pair, :func:`to_map` and :func:`from_map`, converts a queue
policy, meter or valve to the map written in the TOML file, sent over the
wire and shown by the console, and back. A map names its class under the key
of its kind (``{"policy": "codel", "target": 0.05}``) and carries the
constructor's keyword arguments as the other keys, durations in seconds.

* Infinity (``None`` in Python) is read from the float ``inf`` or nil and
  written as nil.
* A :class:`~sbroker.FairQueue`'s ``key`` is ``"value"`` (the request value
  itself, ``key=None``) or ``["item", i]`` (:class:`ItemKey`: element or map
  key ``i`` of the value); its ``queue`` is a nested policy map.
* A :class:`~sbroker.PieMeter`'s ``ask``/``ask_r`` are maps with ``target``
  and ``interval``.
* An :class:`~sbroker.UpdateMeter`'s ``targets`` are ``[regulator_name, side,
  update]`` (``update`` optional); names are turned into regulators by the
  caller's ``resolve_regulator`` and back by ``regulator_name``.

:func:`host_from_map` and :func:`host_to_map` do the same for a whole broker
(``{"ask", "ask_r", "meters"}``) or regulator (``{"queue", "valve", "meters"}``).
Every error is a ``TypeError`` or ``ValueError`` whose message starts with
the ``where`` it was given (``"sbroker.toml [brokers.db] ask.target"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import attrs

from sbroker.meters import BetterMeter, OverloadMeter, PieMeter, UnderloadMeter, UpdateMeter
from sbroker.queues import AdaptiveQueue, CodelQueue, DropQueue, FairQueue, TimeoutQueue
from sbroker.regulator import CodelValve, OpenValve, RateValve, RelativeValve

__all__ = [
    "HOST_PARTS",
    "MAP_NAMES",
    "ItemKey",
    "from_map",
    "host_from_map",
    "host_to_map",
    "to_map",
]

Kind = Literal["policy", "meter", "valve"]
HostKind = Literal["broker", "regulator"]

#: The classes a map may name, by kind and snake-case name. Extend by adding a line.
MAP_NAMES: dict[str, dict[str, type]] = {
    "policy": {
        "drop": DropQueue,
        "timeout": TimeoutQueue,
        "codel": CodelQueue,
        "fair": FairQueue,
        "adaptive": AdaptiveQueue,
    },
    "meter": {
        "overload": OverloadMeter,
        "underload": UnderloadMeter,
        "pie": PieMeter,
        "better": BetterMeter,
        "update": UpdateMeter,
    },
    "valve": {
        "open": OpenValve,
        "relative": RelativeValve,
        "codel": CodelValve,
        "rate": RateValve,
    },
}

#: The parts of a host's config map and the kind of each (``"meters"``: a list of meters).
HOST_PARTS: dict[str, dict[str, str]] = {
    "broker": {"ask": "policy", "ask_r": "policy", "meters": "meters"},
    "regulator": {"queue": "policy", "valve": "valve", "meters": "meters"},
}

#: Constructor arguments that are not configuration values (random sources, callbacks).
_NOT_MAPPED = frozenset({"rng", "on_alarm"})

Resolver = Callable[[str], object]
Namer = Callable[[object], str]


@attrs.frozen
class ItemKey:
    """A :class:`~sbroker.FairQueue` key: element (or map key) ``index`` of the value.

    A value that has no such element (or whose element cannot be hashed) is
    keyed ``None``: all of them share one sub-queue.
    """

    index: int | str = attrs.field()

    @index.validator
    def _check_index(self, _attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise TypeError(f"the item index must be an int or a str, got {value!r}")

    def __call__(self, value: Any) -> Hashable:
        try:
            item = value[self.index]
            hash(item)
        except (LookupError, TypeError):
            return None
        return item  # type: ignore[no-any-return]


# -- object -> map -------------------------------------------------------------------------


def _class_name(obj: object) -> tuple[str, str]:
    """The ``(kind, name)`` under which ``obj``'s class is registered."""
    for kind, names in MAP_NAMES.items():
        for name, cls in names.items():
            if type(obj) is cls:
                return kind, name
    raise TypeError(f"{obj!r} has no map form: its class is not in MAP_NAMES")


def _default_name(regulator: object) -> str:
    name = getattr(regulator, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"targets: cannot name regulator {regulator!r}")
    return name


def _value_to_map(cls: type, field: str, value: Any, regulator_name: Namer) -> Any:
    if cls is FairQueue and field == "queue":
        return to_map(value)
    if cls is FairQueue and field == "key":
        if value is None:
            return "value"
        if isinstance(value, ItemKey):
            return ["item", value.index]
        raise TypeError(f"key: {value!r} has no map form (use None or ItemKey)")
    if cls is PieMeter and field in ("ask", "ask_r"):
        return dict(value)
    if cls is UpdateMeter and field == "targets":
        return [[regulator_name(reg), side, update] for reg, side, update in value]
    return value


def to_map(obj: object, *, regulator_name: Namer | None = None) -> dict[str, Any]:
    """The map of a policy, meter or valve (protocol.md section 5); every parameter is written.

    ``regulator_name`` names an :class:`~sbroker.UpdateMeter`'s target
    regulators (default: their ``name`` attribute). Raises ``TypeError`` for
    an object with no map form (a class not in :data:`MAP_NAMES`, an
    ``on_alarm`` callback, a custom FairQueue key function).
    """
    kind, name = _class_name(obj)
    namer = _default_name if regulator_name is None else regulator_name
    data: dict[str, Any] = {kind: name}
    for field in attrs.fields(type(obj)):  # type: ignore[arg-type]
        value = getattr(obj, field.name)
        if field.name in _NOT_MAPPED:
            if field.name == "on_alarm" and value is not None:
                raise TypeError(f"{obj!r}: on_alarm callbacks have no map form")
            continue
        data[field.name] = _value_to_map(type(obj), field.name, value, namer)
    return data


def host_to_map(parts: Mapping[str, Any], *, regulator_name: Namer | None = None) -> dict[str, Any]:
    """The config map of a host from its parts (``{"ask": policy, ..., "meters": [...]}``)."""
    data: dict[str, Any] = {}
    for part, value in parts.items():
        if part == "meters":
            data[part] = [to_map(meter, regulator_name=regulator_name) for meter in value]
        else:
            data[part] = to_map(value, regulator_name=regulator_name)
    return data


# -- map -> object -------------------------------------------------------------------------


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _fair_key(value: object, where: str) -> Any:
    if value is None or value == "value":
        return None
    if (
        _is_sequence(value)
        and len(value) == 2  # type: ignore[arg-type]
        and value[0] == "item"  # type: ignore[index]
    ):
        try:
            return ItemKey(value[1])  # type: ignore[index]
        except TypeError as exc:
            raise TypeError(f"{where}: {exc}") from None
    raise ValueError(f'{where}: must be "value" or ["item", i], got {value!r}')


def _targets(value: object, where: str, resolve: Resolver | None) -> list[tuple[Any, ...]]:
    if not _is_sequence(value):
        raise TypeError(f"{where}: must be a list of [regulator, side, update], got {value!r}")
    targets = []
    entry: Any
    for index, entry in enumerate(value):  # type: ignore[arg-type]
        here = f"{where}[{index}]"
        if not _is_sequence(entry) or len(entry) not in (2, 3):
            raise TypeError(f"{here}: must be [regulator, side] or [regulator, side, update]")
        name = entry[0]
        if not isinstance(name, str):
            raise TypeError(f"{here}: the regulator must be named by a str, got {name!r}")
        if resolve is None:
            raise ValueError(f"{here}: regulator {name!r} cannot be resolved here")
        try:
            regulator = resolve(name)
        except LookupError:
            raise ValueError(f"{here}: no regulator named {name!r}") from None
        except ValueError as exc:
            raise ValueError(f"{here}: {exc}") from None
        targets.append((regulator, *(_infinity(item) for item in entry[1:])))
    return targets


def _infinity(value: Any) -> Any:
    """Section 5: the float ``inf`` means infinity, ``None`` in Python."""
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None
    return value


def _value_from_map(cls: type, field: str, value: Any, where: str, resolve: Resolver | None) -> Any:
    if cls is FairQueue and field == "queue":
        return from_map(value, "policy", where, resolve_regulator=resolve)
    if cls is FairQueue and field == "key":
        return _fair_key(value, where)
    if cls is UpdateMeter and field == "targets":
        return _targets(value, where, resolve)
    if cls is PieMeter and field in ("ask", "ask_r") and isinstance(value, Mapping):
        return {key: _infinity(item) for key, item in value.items()}
    return _infinity(value)


def from_map(
    data: Mapping[str, Any],
    kind: Kind,
    where: str,
    *,
    resolve_regulator: Resolver | None = None,
) -> object:
    """The policy, meter or valve a map describes (protocol.md section 5).

    ``kind`` is the key naming the class (``"policy"``, ``"meter"`` or
    ``"valve"``); absent parameters take the constructor's defaults.
    ``resolve_regulator(name)`` turns an UpdateMeter target's name into a
    regulator (raising ``LookupError`` or ``ValueError`` for an unknown name).
    Raises ``TypeError``/``ValueError`` whose message starts with ``where``.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: must be a map with a {kind!r} key, got {data!r}")
    names = MAP_NAMES[kind]
    name = data.get(kind)
    if name is None:
        raise ValueError(f"{where}: the map has no {kind!r} key naming one of {sorted(names)}")
    if name not in names:
        raise ValueError(f"{where}.{kind}: must be one of {sorted(names)}, got {name!r}")
    cls = names[name]
    fields = {field.name for field in attrs.fields(cls) if field.name not in _NOT_MAPPED}
    kwargs = {}
    for key, value in data.items():
        if key == kind:
            continue
        if key not in fields:
            raise ValueError(f"{where}.{key}: {name!r} has no such parameter ({sorted(fields)})")
        kwargs[key] = _value_from_map(cls, key, value, f"{where}.{key}", resolve_regulator)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def host_from_map(
    data: Mapping[str, Any],
    host_kind: HostKind,
    where: str,
    *,
    resolve_regulator: Resolver | None = None,
) -> dict[str, Any]:
    """The keyword arguments (for the constructor or ``change_config``) a host map describes.

    Absent parts are absent from the result (so ``change_config`` keeps them).
    ``where`` names the host (``"sbroker.toml [brokers.db]"``); errors name
    the part too (``"... [brokers.db] ask.target: ..."``).
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: must be a map, got {data!r}")
    parts = HOST_PARTS[host_kind]
    kwargs: dict[str, Any] = {}
    for part, value in data.items():
        here = f"{where} {part}"
        if part not in parts:
            raise ValueError(f"{here}: a {host_kind} has no such part ({sorted(parts)})")
        if parts[part] != "meters":
            kind: Kind = parts[part]  # type: ignore[assignment]
            kwargs[part] = from_map(value, kind, here, resolve_regulator=resolve_regulator)
            continue
        if not _is_sequence(value):
            raise TypeError(f"{here}: must be a list of meter maps, got {value!r}")
        kwargs[part] = [
            from_map(item, "meter", f"{here}[{index}]", resolve_regulator=resolve_regulator)
            for index, item in enumerate(value)
        ]
    return kwargs
