"""TLS on the TCP listeners, with test certificates from trustme (protocol.md A4)."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import access_harness
import msgpack
import pytest
import trio
import trustme
from access_harness import TOKEN
from service_harness import serving

from sbroker import Drop
from sbroker.client import ConnectionFailed, connect
from sbroker.service.listen import (
    Address,
    bound_address,
    open_listeners,
    open_stream,
    parse_address,
    server_ssl_context,
)

TIMEOUT = 10
no_token_logged = access_harness.no_token_logged
CONFIG = "[brokers.default]\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA, tmp_path: Path) -> ssl.SSLContext:
    """Built from PEM files, as the server does with [server] tls_cert and tls_key."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return server_ssl_context(str(cert_file), str(key_file))


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _echo(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    stream = await listener.accept()
    async with stream:
        try:
            await stream.send_all(await stream.receive_some())
        except trio.BrokenResourceError:
            pass  # a client that refused our certificate


async def test_tls_round_trip(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners(
            [parse_address("127.0.0.1:0")], ssl_context=server_context
        )
        async with listener, trio.open_nursery() as nursery:
            assert isinstance(listener, trio.SSLListener)
            nursery.start_soon(_echo, listener)
            stream = await open_stream(bound_address(listener), ssl_context=client_context)
            async with stream:
                assert isinstance(stream, trio.SSLStream)
                await stream.send_all(b"secret")
                assert await stream.receive_some() == b"secret"


@pytest.mark.parametrize("hostname", [None, "other.example"])
async def test_untrusted_or_wrong_name_refused(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, hostname: str | None
) -> None:
    # a client that does not trust the CA (hostname None), or checks another name, never
    # completes the handshake
    context = ssl.create_default_context() if hostname is None else client_context
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners(
            [parse_address("127.0.0.1:0")], ssl_context=server_context
        )
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_echo, listener)
            with pytest.raises(trio.BrokenResourceError) as info:
                await open_stream(
                    bound_address(listener), ssl_context=context, server_hostname=hostname
                )
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_unix_sockets_stay_plain(server_context: ssl.SSLContext, tmp_path: Path) -> None:
    # A4: TLS is served on the TCP addresses; a Unix socket is local
    path = str(tmp_path / "s.sock")
    with trio.fail_after(TIMEOUT):
        (listener,) = await open_listeners(
            [parse_address(f"unix:{path}")], ssl_context=server_context
        )
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(_echo, listener)
            stream = await open_stream(Address("unix", path=path))
            async with stream:
                await stream.send_all(b"plain")
                assert await stream.receive_some() == b"plain"


def test_missing_key_file_named(tmp_path: Path, ca: trustme.CA) -> None:
    cert_file = tmp_path / "cert.pem"
    ca.issue_cert("localhost").cert_chain_pems[0].write_to_path(str(cert_file))
    with pytest.raises(OSError, match="absent-key.pem"):
        server_ssl_context(str(cert_file), str(tmp_path / "absent-key.pem"))


@pytest.mark.usefixtures("no_token_logged")
async def test_client_over_tls_with_token(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # A4 with A1: the client takes an ssl.SSLContext and presents its token inside TLS
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, ssl_context=server_context, token=TOKEN) as served:
            address = str(served.address)
            async with connect(address, token=TOKEN, ssl_context=client_context) as conn:
                assert conn.server_info["brokers"] == ["default"]
                assert isinstance(await conn.broker("default").nb_ask("x"), Drop)
            with pytest.raises(ConnectionFailed):  # a client that does not trust the server
                async with connect(address, token=TOKEN, ssl_context=ssl.create_default_context()):
                    pass  # pragma: no cover


@pytest.mark.usefixtures("no_token_logged")
async def test_plain_client_gets_nothing_from_a_tls_server(server_context: ssl.SSLContext) -> None:
    # A4: requests in clear text are never answered; the server closes the connection
    requests = msgpack.packb([0, 1, "names", []]) * 2000  # more than one bogus TLS record
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, ssl_context=server_context) as served:
            assert served.address.port is not None
            stream = await trio.open_tcp_stream("127.0.0.1", served.address.port)
            async with stream:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(requests)
                received = b""
                with contextlib.suppress(trio.BrokenResourceError):
                    while data := await stream.receive_some():
                        received += data
    assert received == b"" or received[0] in TLS_RECORD_TYPES  # an alert, not a response


TLS_RECORD_TYPES = (0x15, 0x16)  # alert, handshake
