"""Who may use the service: tokens, the admin token and protected mode (protocol.md section 8).

Sans-I/O: :class:`Access` is one connection's state, fed the methods it calls and the ``hello``
options it sends; the server turns its answers into ``unauthorized`` errors. Tokens are compared
in constant time and never written into a message.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, Literal

import attrs

from sbroker.service.listen import Address, is_loopback

__all__ = [
    "ADMIN_METHODS",
    "FAILED_HELLO_MESSAGE",
    "MAX_FAILED_HELLOS",
    "TOKEN_ENV",
    "Access",
    "Tokens",
    "protected_mode_error",
    "resolve_tokens",
]

ADMIN_METHODS = frozenset({"change_config", "reload"})
"""Methods that need ``admin_token`` when one is set (A1)."""

TOKEN_ENV = "SBROKER_TOKEN"
"""The environment variable holding the token (A6: after ``--token-file``, before the file)."""

MAX_FAILED_HELLOS = 3
"""Failed ``hello``s after which the server closes the connection (A1)."""

FAILED_HELLO_MESSAGE = "hello: missing or wrong token"
"""The ``unauthorized`` message for a failed ``hello``."""


@attrs.frozen
class Tokens:
    """The tokens a server requires; ``None`` where not set. Its repr never shows a token."""

    token: str | None = attrs.field(default=None, repr=lambda value: _redacted(value))
    admin_token: str | None = attrs.field(default=None, repr=lambda value: _redacted(value))


def _redacted(value: str | None) -> str:
    return "None" if value is None else "'<redacted>'"


def _read_token_file(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        token = file.read().rstrip("\r\n")
    if not token:
        raise ValueError(f"token file {path}: is empty")
    return token


def _non_empty(token: str | None, where: str) -> str | None:
    if token is not None and not token:
        raise ValueError(f"{where}: a token may not be empty")
    return token


def resolve_tokens(
    *,
    token_file: str | None,
    environ: Mapping[str, str],
    config_token: str | None,
    config_admin_token: str | None,
) -> Tokens:
    """The server's tokens, the first source found winning (A6): ``token_file`` (its trailing
    newline stripped; an empty file is refused), ``SBROKER_TOKEN`` (unset when empty), then the
    configuration file's ``[server] token``. ``admin_token`` comes from the configuration file.

    Raises OSError when the token file cannot be read and ValueError when it or a configured
    token is empty; the messages name the source, never a token.
    """
    if token_file is not None:
        token: str | None = _read_token_file(token_file)
    elif environ.get(TOKEN_ENV):
        token = environ[TOKEN_ENV]
    else:
        token = _non_empty(config_token, "[server] token")
    return Tokens(token, _non_empty(config_admin_token, "[server] admin_token"))


_OPEN = Tokens()


class _Level(IntEnum):
    NONE = 0
    USER = 1
    ADMIN = 2


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    return None


def _matches(presented: bytes, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(presented, token.encode("utf-8"))


class Access:
    """One connection's access (A1, A5, A6): what it has proved with ``hello`` so far.

    With ``token`` set, every method but ``hello`` is unauthorized until a ``hello`` presents
    ``token`` or ``admin_token``; with ``admin_token`` set, the admin methods need it. Access once
    granted is never taken back by a later failed ``hello``.
    """

    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens
        self._level = _Level.NONE
        self._failed_hellos = 0

    def hello(self, opts: Mapping[Any, Any]) -> Literal["ok", "failed", "close"]:
        """Check the token in ``hello``'s opts. ``"failed"``: answer ``unauthorized``;
        ``"close"``: answer ``unauthorized`` and close the connection (the third failure).

        A wrong token (also one that is not a str or bin) always fails; a missing one fails only
        while a token is required and the connection has not yet presented one.
        """
        if self._tokens == _OPEN:
            return "ok"  # neither token set: everything is open, whatever is presented
        if "token" not in opts:
            needed = self._tokens.token is not None and self._level is _Level.NONE
            return self._failed() if needed else "ok"
        presented = _as_bytes(opts["token"])
        if presented is None:
            return self._failed()
        # Both comparisons always run, so the time taken does not say which token matched.
        is_admin = _matches(presented, self._tokens.admin_token)
        is_user = _matches(presented, self._tokens.token)
        if is_admin:
            self._level = _Level.ADMIN
        elif is_user:
            self._level = max(self._level, _Level.USER)
        else:
            return self._failed()
        return "ok"

    def _failed(self) -> Literal["failed", "close"]:
        self._failed_hellos += 1
        return "close" if self._failed_hellos >= MAX_FAILED_HELLOS else "failed"

    def check(self, method: str) -> str | None:
        """``None`` when this connection may call ``method`` now, else the ``unauthorized``
        message to answer it with."""
        if method in ADMIN_METHODS and self._tokens.admin_token is not None:
            if self._level is _Level.ADMIN:
                return None
            return f'{method} needs the admin token: send hello [1, {{"token": ADMIN_TOKEN}}] first'
        if self._tokens.token is not None and self._level is _Level.NONE:
            return f'{method} needs a token: send hello [1, {{"token": TOKEN}}] first'
        return None


def protected_mode_error(
    addresses: Sequence[Address], tokens: Tokens, insecure: bool
) -> str | None:
    """The message refusing to start (A2) when a listen address other than loopback or a Unix
    socket has no ``token`` to protect it (``admin_token`` alone is not enough), else ``None``.
    ``insecure`` (``--insecure``) turns protected mode off."""
    if insecure or tokens.token is not None:
        return None
    exposed = [str(address) for address in addresses if not is_loopback(address)]
    if not exposed:
        return None
    return (
        f"protected mode: refusing to listen on {', '.join(exposed)} without a token, since "
        "anyone who can reach it could take from, flood or reconfigure every broker. "
        'Set a token with `token = "..."` in the config file\'s [server] table, the '
        f"{TOKEN_ENV} environment variable or --token-file PATH; or listen on a loopback "
        "address or a unix: socket; or pass --insecure to serve unprotected anyway."
    )
