"""The client's errors, and how a protocol error (protocol.md section 4) becomes one."""

from __future__ import annotations

from typing import Any

from sbroker._errors import BrokerClosed


class RemoteError(Exception):
    """The server answered a request with an error (protocol.md section 4).

    Attributes:
        code: the error code, e.g. ``"unknown_name"`` or ``"overloaded"``.
        message: the server's human text.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidConfig(RemoteError, ValueError):
    """``change_config`` or ``reload`` was rejected; the running configuration is untouched.

    A ``ValueError`` too, as the in-process ``change_config`` raises.
    """


class Unauthorized(RemoteError):
    """The server wants a token this connection has not presented: ``connect(..., token=...)``
    (or the admin token, for ``change_config`` and ``reload``), protocol.md A1."""


class ConnectionFailed(OSError):
    """The connection to the server failed, or was lost while a call was in flight.

    A call already written to the server is never retried: it raises this.
    """


def error_from_wire(error: Any) -> Exception:
    """The exception for a response's ``error`` field (``[code, message]``).

    ``closed`` becomes :class:`sbroker.BrokerClosed` and ``invalid_config``
    :class:`InvalidConfig`, ``unauthorized`` :class:`Unauthorized`; every
    other code a :class:`RemoteError`.
    """
    if isinstance(error, list) and len(error) == 2:
        code, message = (str(part) for part in error)
    else:
        code, message = "internal", f"malformed error from the server: {error!r}"
    if code == "closed":
        return BrokerClosed(message)
    if code == "invalid_config":
        return InvalidConfig(code, message)
    if code == "unauthorized":
        return Unauthorized(code, message)
    return RemoteError(code, message)
