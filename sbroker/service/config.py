"""The service's configuration file (protocol.md section 7), read with ``tomllib``.

``[server]`` holds the listen addresses, the S10 limits and the access
settings (section 8); ``[brokers.NAME]`` and ``[regulators.NAME]`` hold one
host each, in section 5's shape. This module checks the file's structure and
the ``[server]`` table; the host tables become objects in
:mod:`sbroker.service.hosts`, with errors that name the file, the table and
the parameter, as every error here does.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from sbroker.service.config_maps import HOST_PARTS
from sbroker.service.listen import Address, parse_address
from sbroker.service.protocol import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES

__all__ = [
    "DEFAULT_LISTEN",
    "ConfigError",
    "HostTable",
    "ServerSettings",
    "ServiceConfig",
    "default_config",
    "load_config",
    "parse_config",
]

DEFAULT_LISTEN = "127.0.0.1:7421"
DEFAULT_NAME = "default"
HostKind = Literal["broker", "regulator"]
_TABLES = {"brokers": "broker", "regulators": "regulator"}


class ConfigError(ValueError):
    """An invalid configuration file; the message names the file, table and parameter."""


def _hidden(value: str | None) -> str:
    return "None" if value is None else "'<hidden>'"


@attrs.frozen
class ServerSettings:
    """The ``[server]`` table. Changes take effect at the next start, not on reload.

    Attributes:
        listen: where to listen (``--listen`` replaces it).
        max_message_bytes, max_in_flight, max_connections, max_output_bytes,
            write_deadline: the S10 limits (``write_deadline`` in seconds,
            ``None`` for none).
        token, admin_token, unix_mode, tls_cert, tls_key: section 8's
            settings, read as they are (paths made absolute against the
            file's directory); :mod:`sbroker.service.access` and
            :mod:`sbroker.service.listen` apply them.
    """

    listen: tuple[Address, ...] = (parse_address(DEFAULT_LISTEN),)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_connections: int = 10_000
    max_output_bytes: int = 8 * 1024 * 1024
    write_deadline: float | None = 10.0
    token: str | None = attrs.field(default=None, repr=_hidden)
    admin_token: str | None = attrs.field(default=None, repr=_hidden)
    unix_mode: int = 0o600
    tls_cert: str | None = None
    tls_key: str | None = None


@attrs.frozen
class HostTable:
    """One ``[brokers.NAME]`` or ``[regulators.NAME]`` table, as written.

    ``where`` names it in error messages: ``"FILE [brokers.NAME]"``.
    """

    kind: HostKind
    name: str
    data: Mapping[str, Any]
    where: str


@attrs.frozen
class ServiceConfig:
    """A whole configuration: the file it came from (``None``: built in), the
    ``[server]`` table and the host tables in file order."""

    path: str | None
    server: ServerSettings
    hosts: tuple[HostTable, ...]


def default_config() -> ServiceConfig:
    """Section 7's configuration without a file: broker ``default`` on 127.0.0.1:7421."""
    return ServiceConfig(None, ServerSettings(), (_default_broker("the built-in config"),))


def _default_broker(source: str) -> HostTable:
    data = {"ask": {"policy": "adaptive"}, "ask_r": {"policy": "timeout", "timeout": None}}
    return HostTable("broker", DEFAULT_NAME, data, f"{source} [brokers.{DEFAULT_NAME}]")


def load_config(path: str) -> ServiceConfig:
    """Read and check the file at ``path``; :class:`ConfigError` if unreadable or invalid."""
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the file: {reason}") from None
    return parse_config(text, path, base_dir=os.path.dirname(os.path.abspath(path)))


def parse_config(text: str, source: str, *, base_dir: str) -> ServiceConfig:
    """Check a TOML text; ``source`` names it in errors, relative paths are against ``base_dir``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"server", *_TABLES})
    if unknown:
        raise ConfigError(
            f"{source}: unknown table [{unknown[0]}] (expected [server], [brokers.NAME], "
            "[regulators.NAME])"
        )
    server = _server(document.get("server", {}), source, base_dir)
    hosts: list[HostTable] = []
    for table, kind in _TABLES.items():
        hosts += _hosts(document.get(table, {}), table, kind, source)  # type: ignore[arg-type]
    brokers = {host.name for host in hosts if host.kind == "broker"}
    for host in hosts:
        if host.kind == "regulator" and host.name in brokers:
            raise ConfigError(
                f"{host.where}: {host.name!r} is also a broker; a name belongs to one host"
            )
    if "brokers" not in document and "regulators" not in document:
        hosts = [_default_broker(source)]
    return ServiceConfig(source, server, tuple(hosts))


def _hosts(tables: object, table: str, kind: HostKind, source: str) -> list[HostTable]:
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{source} [{table}]: must be a table of [{table}.NAME] tables")
    hosts = []
    parts = HOST_PARTS[kind]
    for name, data in tables.items():
        where = f"{source} [{table}.{name}]"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table, got {data!r}")
        for part in data:
            if part not in parts:
                raise ConfigError(f"{where} {part}: a {kind} has no such part ({sorted(parts)})")
        hosts.append(HostTable(kind, name, data, where))
    return hosts


# -- [server] -------------------------------------------------------------------------------


def _int(where: str, value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{where}: must be {bounds}, got {value!r}")
    return value


def _seconds(where: str, value: object) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ConfigError(f"{where}: must be a number of seconds (inf for none), got {value!r}")
    if value <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    return None if math.isinf(value) else float(value)


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: must be a non-empty string")  # never shows a token
    return value


def _listen(where: str, value: object) -> tuple[Address, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: must be an address or a non-empty list of addresses")
    addresses = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: addresses are strings, got {item!r}")
        try:
            addresses.append(parse_address(item))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(addresses)


def _server(table: object, source: str, base_dir: str) -> ServerSettings:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source} [server]: must be a table")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{source} [server] {key}"
        if key == "listen":
            kwargs[key] = _listen(where, value)
        elif key in ("max_message_bytes", "max_output_bytes"):
            kwargs[key] = _int(where, value, 64)
        elif key in ("max_in_flight", "max_connections"):
            kwargs[key] = _int(where, value, 1)
        elif key == "write_deadline":
            kwargs[key] = _seconds(where, value)
        elif key in ("token", "admin_token"):
            kwargs[key] = _text(where, value)
        elif key == "unix_mode":
            kwargs[key] = _int(where, value, 0, 0o777)
        elif key in ("tls_cert", "tls_key"):
            kwargs[key] = os.path.join(base_dir, _text(where, value))
        else:
            known = sorted(attrs.fields_dict(ServerSettings))
            raise ConfigError(f"{where}: no such setting (known: {', '.join(known)})")
    if ("tls_cert" in kwargs) != ("tls_key" in kwargs):
        raise ConfigError(f"{source} [server] tls_cert, tls_key: set both or neither")
    return ServerSettings(**kwargs)
