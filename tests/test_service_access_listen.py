"""Listen addresses and listeners: parsing, loopback, Unix socket mode, stale sockets (S1, A3)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from sbroker.service.listen import (
    Address,
    bound_address,
    is_loopback,
    open_listeners,
    open_stream,
    parse_address,
)

TIMEOUT = 10


@pytest.mark.parametrize(
    ("text", "address", "written"),
    [
        ("127.0.0.1:7421", Address("tcp", host="127.0.0.1", port=7421), "127.0.0.1:7421"),
        ("tcp://localhost:0", Address("tcp", host="localhost", port=0), "localhost:0"),
        ("[::1]:7421", Address("tcp", host="::1", port=7421), "[::1]:7421"),
        ("example.com:80", Address("tcp", host="example.com", port=80), "example.com:80"),
        ("unix:/run/s.sock", Address("unix", path="/run/s.sock"), "unix:/run/s.sock"),
        ("unix:///run/s.sock", Address("unix", path="/run/s.sock"), "unix:/run/s.sock"),
        ("unix:rel.sock", Address("unix", path="rel.sock"), "unix:rel.sock"),
    ],
)
def test_parse_address(text: str, address: Address, written: str) -> None:
    assert parse_address(text) == address
    assert str(address) == written
    assert parse_address(written) == address


@pytest.mark.parametrize(
    "text",
    ["", "7421", "host", ":7421", "host:", "host:x", "host:65536", "::1:7421", "[]:1", "unix:"],
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(text)


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.255.0.3:1", True),
        ("[::1]:1", True),
        ("localhost:1", True),
        ("LOCALHOST:1", True),
        ("unix:/x", True),
        ("192.0.2.1:1", False),
        ("198.51.100.7:1", False),  # TEST-NET-2 ("[::]" below is the wildcard case)
        ("[::]:1", False),
        ("localhost.example.com:1", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert is_loopback(parse_address(text)) is loopback


async def _echo_once(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    stream = await listener.accept()
    async with stream:
        data = await stream.receive_some()
        await stream.send_all(data)


async def _round_trip(address: Address) -> bytes:
    stream = await open_stream(address)
    async with stream:
        await stream.send_all(b"ping")
        return await stream.receive_some()


async def test_tcp_and_unix_listeners_serve(tmp_path: Path) -> None:
    # S1: several addresses at once, TCP and Unix.
    path = str(tmp_path / "s.sock")
    with trio.fail_after(TIMEOUT):
        listeners = await open_listeners(
            [parse_address("127.0.0.1:0"), parse_address(f"unix:{path}")]
        )
        try:
            addresses = [bound_address(listener) for listener in listeners]
            assert addresses[0].kind == "tcp" and addresses[0].port != 0
            assert addresses[1] == Address("unix", path=path)
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(_echo_once, listener)
                for address in addresses:
                    assert await _round_trip(address) == b"ping"
        finally:
            for listener in listeners:
                await listener.aclose()
    assert not os.path.exists(path)  # the listener removes its own socket file


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_unix_socket_mode_0600_by_default(tmp_path: Path) -> None:
    # A3
    path = str(tmp_path / "s.sock")
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners([parse_address(f"unix:{path}")])
        async with listener:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert _mode(path) == 0o600


async def test_unix_mode_honoured(tmp_path: Path) -> None:
    # A3: unix_mode says otherwise
    path = str(tmp_path / "s.sock")
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners([parse_address(f"unix:{path}")], unix_mode=0o660)
        async with listener:
            assert _mode(path) == 0o660


async def test_unix_mode_out_of_range_refused(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ValueError, match="unix_mode"):
        await open_listeners([parse_address(f"unix:{tmp_path}/s.sock")], unix_mode=0o1777)


def _stale_socket(path: str) -> None:
    """A socket file whose server has gone: bound, then closed without removing the file."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


async def test_stale_socket_replaced(tmp_path: Path) -> None:
    # A3: a stale socket file is replaced when nothing listens on it
    path = str(tmp_path / "s.sock")
    _stale_socket(path)
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners([parse_address(f"unix:{path}")])
        async with listener:
            assert _mode(path) == 0o600
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_echo_once, listener)
                assert await _round_trip(Address("unix", path=path)) == b"ping"


async def test_live_socket_refused(tmp_path: Path) -> None:
    # A3: ... and only then; a live server keeps its socket
    path = str(tmp_path / "s.sock")
    address = parse_address(f"unix:{path}")
    with trio.fail_after(TIMEOUT):
        (live,) = await open_listeners([address])
        async with live:
            with pytest.raises(OSError, match="another server is listening"):
                await open_listeners([address])
            # the refused attempt's probe was one connection to the live server, which goes on
            # listening on the same file
            await (await live.accept()).aclose()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_echo_once, live)
                assert await _round_trip(address) == b"ping"


async def test_non_socket_file_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("precious")
    with trio.fail_after(TIMEOUT), pytest.raises(OSError, match="not a socket"):
        await open_listeners([parse_address(f"unix:{path}")])
    assert path.read_text() == "precious"


async def test_failure_closes_listeners_already_open(tmp_path: Path) -> None:
    # all or nothing: the listener opened first is closed when the second one fails
    first = parse_address(f"unix:{tmp_path}/first.sock")
    with trio.fail_after(TIMEOUT), pytest.raises(OSError, match="missing"):
        await open_listeners([first, parse_address(f"unix:{tmp_path}/missing/s.sock")])
    assert not os.path.exists(first.path or "")


async def test_failed_setup_leaves_no_socket_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A3: a socket whose mode cannot be set never listens, and its file is removed
    def refuse(path: str, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    path = str(tmp_path / "s.sock")
    with trio.fail_after(TIMEOUT), pytest.raises(PermissionError, match="cannot listen"):
        await open_listeners([parse_address(f"unix:{path}")])
    assert not os.path.exists(path)
