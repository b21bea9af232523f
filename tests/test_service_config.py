"""The configuration file (protocol.md section 7): defaults, [server], errors naming
file, table and parameter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sbroker.service.config import (
    ConfigError,
    ServerSettings,
    default_config,
    load_config,
    parse_config,
)
from sbroker.service.listen import Address


def parse(text: str) -> object:
    return parse_config(text, "f.toml", base_dir="/etc/sbroker")


def test_no_file_and_no_hosts_mean_one_default_broker() -> None:
    for config in (default_config(), parse("[server]\nmax_in_flight = 5\n")):
        [host] = config.hosts  # type: ignore[attr-defined]
        assert (host.kind, host.name) == ("broker", "default")
        assert host.data == {
            "ask": {"policy": "adaptive"},
            "ask_r": {"policy": "timeout", "timeout": None},
        }
    assert default_config().server.listen == (Address("tcp", "127.0.0.1", 7421),)


def test_server_table() -> None:
    config = parse(
        """
        [server]
        listen = ["127.0.0.1:7000", "unix:/run/s.sock"]
        max_message_bytes = 4096
        max_in_flight = 10
        max_connections = 3
        max_output_bytes = 65536
        write_deadline = inf
        token = "secret"
        admin_token = "admin"
        unix_mode = 0o660
        tls_cert = "cert.pem"
        tls_key = "/abs/key.pem"
        """
    )
    server = config.server  # type: ignore[attr-defined]
    assert server == ServerSettings(
        listen=(Address("tcp", "127.0.0.1", 7000), Address("unix", path="/run/s.sock")),
        max_message_bytes=4096,
        max_in_flight=10,
        max_connections=3,
        max_output_bytes=65536,
        write_deadline=None,
        token="secret",
        admin_token="admin",
        unix_mode=0o660,
        tls_cert=os.path.join("/etc/sbroker", "cert.pem"),  # relative to the file (A6)
        tls_key="/abs/key.pem",
    )
    assert "secret" not in repr(server) and "admin'" not in repr(server)
    assert parse('[server]\nlisten = "[::1]:1"\n').server.listen == (  # type: ignore[attr-defined]
        Address("tcp", "::1", 1),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nmax_in_flight = 0\n", r"f.toml \[server\] max_in_flight: must be >= 1"),
        ("[server]\nmax_in_flight = true\n", r"\[server\] max_in_flight: must be an integer"),
        ("[server]\nwrite_deadline = -1\n", r"\[server\] write_deadline: must be > 0"),
        ("[server]\nlisten = []\n", r"\[server\] listen: must be an address"),
        ('[server]\nlisten = ["nowhere"]\n', r"\[server\] listen: address 'nowhere'"),
        ('[server]\ntoken = ""\n', r"\[server\] token: must be a non-empty string"),
        ("[server]\nunix_mode = 0o1777\n", r"\[server\] unix_mode: must be from 0 to 511"),
        ('[server]\ntls_cert = "c.pem"\n', r"\[server\] tls_cert, tls_key: set both"),
        ("[server]\nport = 1\n", r"\[server\] port: no such setting"),
        ("[clients.x]\n", r"f.toml: unknown table \[clients\]"),
        ("brokers = 1\n", r"f.toml \[brokers\]: must be a table"),
        ("[brokers]\ndb = 1\n", r"f.toml \[brokers.db\]: must be a table"),
        ("[brokers.db]\nqueue = {}\n", r"\[brokers.db\] queue: a broker has no such part"),
        ("[brokers.x]\n[regulators.x]\n", r"\[regulators.x\]: 'x' is also a broker"),
        ("[brokers.db\n", r"f.toml: not valid TOML"),
    ],
)
def test_errors_name_file_table_parameter(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_hosts_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[brokers.b]\n[brokers.a]\nask = { policy = "drop" }\n[regulators.r]\n')
    config = load_config(str(path))
    assert [(h.kind, h.name) for h in config.hosts] == [
        ("broker", "b"),
        ("broker", "a"),
        ("regulator", "r"),
    ]
    assert config.hosts[1].where == f"{path} [brokers.a]"
    assert config.path == str(path)
