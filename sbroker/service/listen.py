"""Listen addresses of the service: parsing, listeners (TCP, Unix, TLS) and client streams.

An address is written ``HOST:PORT`` (also ``[::1]:PORT`` and ``tcp://HOST:PORT``) or
``unix:/path`` (also ``unix:///path``), protocol.md S1. Unix sockets are created with mode 0600
unless told otherwise and a stale socket file is replaced only when nothing listens on it
(protocol.md A3); TLS wraps the TCP listeners (A4).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import ssl
import stat
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import trio

__all__ = [
    "Address",
    "UnixSocketListener",
    "bound_address",
    "is_loopback",
    "open_listeners",
    "open_stream",
    "parse_address",
    "server_ssl_context",
]

_UNIX_PREFIX = "unix:"
_TCP_PREFIX = "tcp://"


@attrs.frozen
class Address:
    """One place to listen on or connect to: a TCP host and port, or a Unix socket path."""

    kind: Literal["tcp", "unix"]
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"{_UNIX_PREFIX}{self.path}"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``HOST:PORT``, ``[::1]:PORT``, ``tcp://HOST:PORT``, ``unix:/path`` or
    ``unix:///path``; raise ValueError naming ``text`` when it is none of these."""
    if text.startswith(_UNIX_PREFIX):
        path = text[len(_UNIX_PREFIX) :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"address {text!r}: a Unix socket address needs a path")
        return Address("unix", path=path)
    rest = text[len(_TCP_PREFIX) :] if text.startswith(_TCP_PREFIX) else text
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {text!r}: expected HOST:PORT, [IPV6]:PORT or unix:PATH")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"address {text!r}: empty host in brackets")
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"address {text!r}: write an IPv6 host in brackets, as [::1]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {text!r}: the port must be an integer from 0 to 65535")
    return Address("tcp", host=host, port=int(port_text))


def is_loopback(address: Address) -> bool:
    """Whether only this machine can reach ``address``: a Unix socket, ``localhost``, or an
    IP address in 127.0.0.0/8 or ``::1`` (protocol.md A2, A6)."""
    if address.kind == "unix":
        return True
    host = address.host or ""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UnixSocketListener(trio.abc.Listener[trio.SocketStream]):
    """A listener on a Unix socket file it created; closing it removes that file (only if the
    path still names the socket it bound, so a successor's socket is never removed)."""

    def __init__(self, sock: trio.socket.SocketType, path: str, identity: tuple[int, int]) -> None:
        self.socket_listener = trio.SocketListener(sock)
        self.path = path
        self._identity = identity

    async def accept(self) -> trio.SocketStream:
        """Accept the next connection."""
        return await self.socket_listener.accept()

    async def aclose(self) -> None:
        """Close the socket and remove its file."""
        try:
            if _file_identity(self.path) == self._identity:
                os.unlink(self.path)
        except OSError:
            pass
        await self.socket_listener.aclose()


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


async def _remove_stale_socket(path: str) -> None:
    """Remove the socket file at ``path`` if nothing listens on it; refuse otherwise."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"unix:{path} exists and is not a socket; not replacing it")
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(path)
    except ConnectionRefusedError:
        pass  # stale: its server is gone
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(
            exc.errno, f"unix:{path}: cannot tell whether it is in use ({_reason(exc)})"
        ) from None
    else:
        raise OSError(
            errno.EADDRINUSE,
            f"unix:{path}: another server is listening on it; stop it or choose another path",
        )
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _open_unix_listener(path: str, mode: int) -> UnixSocketListener:
    await _remove_stale_socket(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    identity = None
    try:
        await sock.bind(path)
        identity = _file_identity(path)
        if identity is None:
            raise FileNotFoundError(errno.ENOENT, "the socket file vanished after bind")
        # Bound but not yet listening: every connect is refused, so the mode is set before
        # anyone can reach the socket.
        os.chmod(path, mode)
        sock.listen()
    except BaseException as exc:
        sock.close()
        if identity is not None and _file_identity(path) == identity:
            os.unlink(path)  # leave no socket file behind
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot listen on unix:{path}: {_reason(exc)}") from None
        raise
    return UnixSocketListener(sock, path, identity)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


async def _open_tcp_listeners(address: Address) -> list[trio.SocketListener]:
    assert address.port is not None
    try:
        return await trio.open_tcp_listeners(address.port, host=address.host)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {_reason(exc)}") from None


async def open_listeners(
    addresses: Sequence[Address],
    *,
    unix_mode: int = 0o600,
    ssl_context: ssl.SSLContext | None = None,
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Open a listener for every address (a TCP host may give several, one per interface).

    Unix sockets get file mode ``unix_mode``; TCP listeners serve TLS when ``ssl_context`` is
    given. Either every listener opens or none stays open: on an error the ones already open are
    closed and an OSError naming the address is raised.
    """
    if not 0 <= unix_mode <= 0o777:
        raise ValueError(f"unix_mode {unix_mode:#o}: must be a file mode from 0o000 to 0o777")
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    try:
        for address in addresses:
            if address.kind == "unix":
                assert address.path is not None
                listeners.append(await _open_unix_listener(address.path, unix_mode))
            elif ssl_context is None:
                listeners.extend(await _open_tcp_listeners(address))
            else:
                listeners.extend(
                    trio.SSLListener(listener, ssl_context)
                    for listener in await _open_tcp_listeners(address)
                )
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (``[server] tls_cert`` and ``tls_key``, A4);
    OSError or ssl.SSLError naming the files when they cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise type(exc)(
            exc.errno, f"tls_cert {cert_file}, tls_key {key_file}: {_reason(exc)}"
        ) from None
    return context


def bound_address(listener: trio.abc.Listener[Any]) -> Address:
    """The address a listener from :func:`open_listeners` actually listens on (the real port
    when it was opened with port 0)."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, UnixSocketListener):
        return Address("unix", path=listener.path)
    if isinstance(listener, trio.SocketListener):
        host, port = listener.socket.getsockname()[:2]
        return Address("tcp", host=host, port=port)
    raise TypeError(f"not a listener from open_listeners: {listener!r}")


async def open_stream(
    address: Address,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> trio.abc.Stream:
    """Connect to ``address`` (client side). On TCP, ``ssl_context`` makes it a TLS stream,
    checked against ``server_hostname`` (default: the address's host), with the handshake done
    before returning; Unix sockets are local and never use TLS."""
    if address.kind == "unix":
        assert address.path is not None
        return await trio.open_unix_socket(address.path)
    assert address.host is not None and address.port is not None
    tcp_stream = await trio.open_tcp_stream(address.host, address.port)
    if ssl_context is None:
        return tcp_stream
    tls_stream = trio.SSLStream(
        tcp_stream, ssl_context, server_hostname=server_hostname or address.host
    )
    try:
        await tls_stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp_stream)
        raise
    return tls_stream
