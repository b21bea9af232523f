"""One connection's requests, carried out on the service's brokers and regulators.

Theory of operation
-------------------

A :class:`Session` is the adapter between one connection's protocol events
(:mod:`sbroker.service.protocol`) and the in-process :class:`~sbroker.Broker`
and :class:`~sbroker.regulator.Regulator` objects: every method of
protocol.md section 3 becomes an ordinary synchronous call on them, made in
the order the requests arrive. Nothing here blocks, and nothing touches a
socket: responses leave through the ``send`` callback the connection gives.

Waiting. A request that may wait (``ask``, ``ask_r``, ``dynamic_ask*``) is an
``async_ask``/``async_ask_r`` (or ``dynamic_*``) call whose
:class:`~sbroker.Pending` is kept in the session's table by msgid. The
session hears of its settlement through the pending's wake-up hook
(:func:`on_settled`), synchronously, at the moment the host answers it, so a
response goes out once, with whatever settled it: ``Go``, ``Drop`` (a
policy's drop, or the host closing) or ``cancelled``. ``cancel_request`` (S6)
and closing (S7) call ``Pending.cancel()``, which removes exactly that
request when it is still queued and does nothing when a ``Go`` already won
the race (S8). Tags are per connection (section 3): the host sees the tag
``(session id, packed tag)``, so ``cancel`` reaches only this connection's
requests, and ``1``, ``1.0`` and ``true`` pack differently.

Permits. A regulator's ``Go`` grants a permit, known on the wire by a fresh
int ref that only this session can ``continue``/``done``; the session keeps
each permit with its regulator and releases every one still held when it
closes (S7).

Monitors (S9). The two sides of a broker match are paired as the match is
made: the waiting side's settlement runs inside the caller's call, before it
returns, and leaves the waiting session in the :class:`MatchBook` under the
match's ref; the caller takes it out at once. Each session remembers the
counterparty of its last ``max_matches`` ``Go``s; ``monitor`` registers with
the counterparty, which sends ``down`` when it closes.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from importlib import metadata
from typing import Any

import attrs
import msgpack  # type: ignore[import-untyped]

from sbroker._broker import Broker
from sbroker._errors import BrokerClosed
from sbroker._pending import Pending
from sbroker._results import Drop, Go, NotFound, Stop
from sbroker.regulator import Regulator
from sbroker.service.access import FAILED_HELLO_MESSAGE, Access, Tokens
from sbroker.service.config import ConfigError
from sbroker.service.hosts import Host, Hosts
from sbroker.service.protocol import (
    Fatal,
    Notification,
    Rejected,
    Request,
    ServerProtocol,
    is_msgid,
)

__all__ = ["PROTOCOL_VERSION", "Context", "MatchBook", "Session", "on_settled"]

logger = logging.getLogger("sbroker.service")

PROTOCOL_VERSION = 1
_LATER = object()  # the request waits; its settlement answers it
_session_numbers = itertools.count(1)
_permit_numbers = itertools.count(1)


def server_version() -> str:
    """The installed sbroker's version ("dev" when run from a source tree)."""
    try:
        return f"sbroker {metadata.version('sbroker')}"
    except metadata.PackageNotFoundError:
        return "sbroker dev"


class ServiceError(Exception):
    """A request answered with an error (protocol.md section 4)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class _SettleHook:
    """Stands in for the ``trio.Event`` a :class:`~sbroker.Pending` sets when it is
    settled or cancelled, to call ``callback`` instead. Nobody waits on it."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback

    def set(self) -> None:
        self.callback()


class _WaitingRequest:
    """The settle hook of one waiting request: answers msgid ``msgid`` of ``session``
    (one object per waiting request, no closure)."""

    __slots__ = ("msgid", "session")

    def __init__(self, session: Session, msgid: int) -> None:
        self.session = session
        self.msgid = msgid

    def set(self) -> None:
        self.session._settled(self.msgid)


def on_settled(pending: Pending, callback: Callable[[], None]) -> None:
    """Call ``callback()`` once, synchronously, when ``pending`` is settled or cancelled.

    For a pending that nobody ``wait()``s on (the service's): it uses the
    event slot ``Pending`` sets on settlement.
    """
    _hook(pending, _SettleHook(callback))


def _hook(pending: Pending, hook: _SettleHook | _WaitingRequest) -> None:
    """Put ``hook`` in the event slot ``pending`` sets when it is settled or cancelled."""
    assert pending._event is None and pending.result is None
    pending._event = hook  # type: ignore[assignment]


class MatchBook:
    """Pairs the two sessions of each broker match, service-wide (S9).

    The waiting side is entered while the caller's call runs and taken out by
    the caller right after, so the book holds at most a match or two at a time.
    """

    def __init__(self) -> None:
        self._waiters: dict[tuple[int, Hashable], Session] = {}

    def waiter_matched(self, host: Host, ref: Hashable, session: Session) -> None:
        """The waiting side of match ``ref`` was answered ``Go``."""
        self._waiters[(id(host), ref)] = session

    def caller_matched(self, host: Host, ref: Hashable) -> Session | None:
        """The calling side of match ``ref`` got its ``Go``: the waiting side's session."""
        return self._waiters.pop((id(host), ref), None)


@attrs.frozen
class Context:
    """What the sessions of one service share."""

    hosts: Hosts
    reload: Callable[[], dict[str, Any]]
    tokens: Tokens = Tokens()
    node: str = "node"
    max_matches: int = 1024
    matches: MatchBook = attrs.Factory(MatchBook)


def _plain(value: Any) -> Any:
    """A statistics value as MessagePack data: attrs objects as maps, sets as sorted lists."""
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value


def _result(result: Go | Drop | Stop | NotFound, ref: Any, value: Any) -> list[Any]:
    """Section 2's result arrays."""
    if isinstance(result, Go):
        return ["go", ref, value, result.relative_time, result.sojourn_time]
    kind = {Drop: "drop", Stop: "stop", NotFound: "not_found"}[type(result)]
    return [kind, result.sojourn_time]


def _check_ref(ref: object) -> Hashable:
    if type(ref) is not int and type(ref) is not str:
        raise ServiceError("bad_request", f"ref must be an int or a str, got {type(ref).__name__}")
    return ref


#: Which hosts each method takes: "broker", "regulator" or "any".
_KINDS = {
    "ask": "any",
    "ask_r": "broker",
    "nb_ask": "any",
    "nb_ask_r": "broker",
    "dynamic_ask": "any",
    "dynamic_ask_r": "broker",
    "cancel": "any",
    "len": "any",
    "len_r": "broker",
    "size": "regulator",
    "continue": "regulator",
    "done": "regulator",
    "update": "regulator",
    "statistics": "any",
    "config": "any",
    "change_config": "any",
    "monitor": "any",
    "estimate": "any",
}

#: The host call behind each asking method. ``ask`` is a ``dynamic_ask``: the wire
#: answer is the same, and an immediate match needs no ``Pending``.
_CALLS = {
    "ask": "dynamic_ask",
    "ask_r": "dynamic_ask_r",
    "dynamic_ask": "dynamic_ask",
    "dynamic_ask_r": "dynamic_ask_r",
    "nb_ask": "nb_ask",
    "nb_ask_r": "nb_ask_r",
}
_NON_BLOCKING = frozenset({"nb_ask", "nb_ask_r"})


class Session:
    """The state of one connection's requests (see the module's docstring).

    Args:
        context: what the service's sessions share.
        protocol: the connection's protocol state (packs the responses).
        send: queues bytes for the peer; never blocks, never raises.
    """

    def __init__(
        self, context: Context, protocol: ServerProtocol, send: Callable[[bytes], None]
    ) -> None:
        self.id = next(_session_numbers)
        self.closed = False
        self.close_requested = False  # set when the session wants its connection closed
        self._context = context
        self._hosts = context.hosts
        self._protocol = protocol
        self._send = send
        self._access = Access(context.tokens)
        self._waiting: dict[int, tuple[Pending, Host, str]] = {}
        self._permits: dict[str, dict[int, tuple[Regulator, Hashable]]] = {}
        self._permit_watch: set[tuple[str, int]] = set()
        self._matches: OrderedDict[tuple[str, Hashable], Session | None] = OrderedDict()
        self._watchers: dict[tuple[int, str, Hashable], Session] = {}
        self._watching: list[tuple[Session, tuple[int, str, Hashable]]] = []

    @property
    def waiting(self) -> int:
        """Requests of this session queued in a host."""
        return len(self._waiting)

    @property
    def permits(self) -> int:
        """Permits this session holds."""
        return sum(len(permits) for permits in self._permits.values())

    # -- events --------------------------------------------------------------------------

    def handle(self, event: Request | Notification | Rejected | Fatal) -> bool:
        """Act on one protocol event; ``False`` when the connection must now close."""
        if isinstance(event, Request):
            self._request(event)
        elif isinstance(event, Notification):
            self._notification(event)
        elif isinstance(event, Rejected):
            logger.info("connection %d: %s: %s", self.id, event.code, event.message)
            self._send(self._protocol.reject(event))
        else:
            logger.info("connection %d: closing: %s: %s", self.id, event.code, event.message)
            if event.msgid is not None:
                self._send(self._protocol.reject(event))
            self.close_requested = True
        return not self.close_requested

    def _respond(self, msgid: int, error: tuple[str, str] | None, result: Any = None) -> None:
        data = self._protocol.respond(msgid, error, result)
        if not self.closed:
            self._send(data)

    def _request(self, request: Request) -> None:
        msgid, method = request.msgid, request.method
        try:
            denied = None if method == "hello" else self._access.check(method)
            if denied is not None:  # A1: before a valid hello, every request (also unknown)
                raise ServiceError("unauthorized", denied)
            handler = _METHODS.get(method)
            if handler is None:
                raise ServiceError("unknown_method", f"no method {method!r}")
            result = handler(self, msgid, method, request.params)
        except ServiceError as exc:
            self._respond(msgid, (exc.code, exc.message))
        except BrokerClosed:
            self._respond(msgid, ("closed", f"{method}: the broker or regulator is closed"))
        except Exception:
            logger.exception("connection %d: internal error in %s", self.id, method)
            self._respond(msgid, ("internal", f"{method}: internal error (logged)"))
        else:
            if result is not _LATER:
                self._respond(msgid, None, result)

    def _notification(self, event: Notification) -> None:
        params = event.params
        if event.method == "cancel_request" and len(params) == 1 and is_msgid(params[0]):
            entry = self._waiting.get(params[0])
            if entry is not None:
                entry[0].cancel()  # S6: a no-op when it was answered already
            return
        logger.info("connection %d: closing: bad notification %r", self.id, event.method[:40])
        self.close_requested = True  # S12: an unanswerable message closes the connection

    # -- names and parameters ------------------------------------------------------------

    def _host(self, method: str, name: object) -> Host:
        if not isinstance(name, str):
            raise ServiceError("bad_request", f"{method}: name must be a str")
        host = self._hosts.get(name)
        if host is None:
            raise ServiceError("unknown_name", f"{method}: no broker or regulator named {name!r}")
        kind = _KINDS[method]
        if kind == "broker" and not isinstance(host, Broker):
            raise ServiceError("unknown_name", f"{method}: {name!r} is a regulator, not a broker")
        if kind == "regulator" and not isinstance(host, Regulator):
            raise ServiceError("unknown_name", f"{method}: {name!r} is a broker, not a regulator")
        return host

    def _tag(self, method: str, opts: object) -> Hashable:
        if opts is None:
            return None
        if not isinstance(opts, Mapping):
            raise ServiceError("bad_request", f"{method}: opts must be a map")
        if "tag" not in opts:
            return None
        return self._tag_key(opts["tag"])

    def _tag_key(self, tag: object) -> Hashable:
        """Section 3: tags belong to the connection and compare as packed MessagePack."""
        return (self.id, msgpack.packb(tag, use_bin_type=True))

    # -- asking --------------------------------------------------------------------------

    def _ask(self, msgid: int, method: str, params: tuple[Any, ...]) -> Any:
        count = len(params)
        non_blocking = method in _NON_BLOCKING
        if not 1 <= count <= (2 if non_blocking else 3):
            _unpack(method, params, 1, 2 if non_blocking else 3)  # raises its bad_request
        name = params[0]
        host = self._host(method, name)
        call = getattr(host, _CALLS[method])
        value = params[1] if count > 1 else None
        tag = self._tag(method, params[2]) if count > 2 else None
        try:
            answer = call(value) if non_blocking else call(value, tag=tag)
        except (TypeError, ValueError) as exc:  # e.g. a value a FairQueue key cannot hash
            raise ServiceError("bad_request", f"{method}: {exc}") from None
        if isinstance(answer, Pending):
            if answer.result is None:
                self._waiting[msgid] = (answer, host, name)
                _hook(answer, _WaitingRequest(self, msgid))
                return _LATER
            answer = answer.result
        return self._answer(name, host, answer, waited=False)

    def _settled(self, msgid: int) -> None:
        """A waiting request's pending was settled or cancelled: answer it (once)."""
        try:
            pending, host, name = self._waiting.pop(msgid)
            if pending.result is None:
                self._respond(msgid, ("cancelled", "the request was withdrawn"))
            else:
                # Kept even while closing: a permit granted as close() withdraws this
                # session's other asks is then released with the others.
                self._respond(msgid, None, self._answer(name, host, pending.result, waited=True))
        except Exception:  # this runs inside a host's call: never let it raise there
            logger.exception("connection %d: internal error answering a request", self.id)

    def _answer(self, name: str, host: Host, answer: Go | Drop, *, waited: bool) -> list[Any]:
        if not isinstance(answer, Go):
            return _result(answer, None, None)
        if isinstance(host, Regulator):
            ref = next(_permit_numbers)
            self._permits.setdefault(name, {})[ref] = (host, answer.ref)
            return _result(answer, ref, name)
        matches = self._context.matches
        if waited:
            matches.waiter_matched(host, answer.ref, self)
        else:
            other = matches.caller_matched(host, answer.ref)
            self._remember(name, answer.ref, other)
            if other is not None:
                other._remember(name, answer.ref, self)
        return _result(answer, answer.ref, answer.value)

    def _remember(self, name: str, ref: Hashable, counterparty: Session | None) -> None:
        matches = self._matches
        matches[(name, ref)] = counterparty
        if len(matches) > self._context.max_matches:
            matches.popitem(last=False)

    def _cancel(self, msgid: int, method: str, params: tuple[Any, ...]) -> int:
        name, tag = _unpack(method, params, 2, 2)
        return self._host(method, name).cancel(self._tag_key(tag))

    # -- plain calls ---------------------------------------------------------------------

    def _length(self, msgid: int, method: str, params: tuple[Any, ...]) -> int:
        (name,) = _unpack(method, params, 1, 1)
        host = self._host(method, name)
        return getattr(host, method)()  # type: ignore[no-any-return]

    def _permit(self, method: str, name: str, ref: object) -> tuple[Regulator, Hashable] | None:
        ref = _check_ref(ref)
        return self._permits.get(name, {}).get(ref) if isinstance(ref, int) else None

    def _release(self, name: str, ref: int) -> None:
        """A permit of this session ended: forget it, tell its monitor (S9 ``done``)."""
        del self._permits[name][ref]
        if (name, ref) in self._permit_watch:
            self._permit_watch.discard((name, ref))
            self._down(name, ref, "done")

    def _continue(self, msgid: int, method: str, params: tuple[Any, ...]) -> list[Any]:
        name, ref = _unpack(method, params, 2, 2)
        self._host(method, name)
        held = self._permit(method, name, ref)
        if held is None:
            return _result(NotFound(0), None, None)
        regulator, permit = held
        try:
            answer = regulator.continue_(permit)
        except BrokerClosed:  # its regulator was removed: the permit went with it
            self._release(name, ref)
            raise
        if not isinstance(answer, Go):
            self._release(name, ref)
        return _result(answer, ref, name)

    def _done(self, msgid: int, method: str, params: tuple[Any, ...]) -> bool:
        name, ref = _unpack(method, params, 2, 2)
        self._host(method, name)
        held = self._permit(method, name, ref)
        if held is None:
            return False
        regulator, permit = held
        self._release(name, ref)
        return regulator.done(permit)

    def _update(self, msgid: int, method: str, params: tuple[Any, ...]) -> None:
        name, relative_time = _unpack(method, params, 2, 2)
        regulator = self._host(method, name)
        if type(relative_time) is not int:
            raise ServiceError("bad_request", f"{method}: relative_time must be an int of ns")
        assert isinstance(regulator, Regulator)
        regulator.update(relative_time)

    def _statistics(self, msgid: int, method: str, params: tuple[Any, ...]) -> Any:
        (name,) = _unpack(method, params, 1, 1)
        return _plain(self._host(method, name).statistics())

    def _config(self, msgid: int, method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        (name,) = _unpack(method, params, 1, 1)
        return self._hosts.to_map(self._host(method, name))

    def _change_config(self, msgid: int, method: str, params: tuple[Any, ...]) -> None:
        name, data = _unpack(method, params, 2, 2)
        host = self._host(method, name)
        try:
            self._hosts.change_config(host, data, f"{method} {name}")
        except (TypeError, ValueError) as exc:
            raise ServiceError("invalid_config", str(exc)) from None

    def _estimate(self, msgid: int, method: str, params: tuple[Any, ...]) -> list[Any]:
        (name,) = _unpack(method, params, 1, 1)
        estimate = getattr(self._host(method, name), "estimate", None)
        return [None, None] if estimate is None else [estimate("ask"), estimate("ask_r")]

    def _names(self, msgid: int, method: str, params: tuple[Any, ...]) -> dict[str, list[str]]:
        _unpack(method, params, 0, 0)
        return self._hosts.names()

    def _reload(self, msgid: int, method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        _unpack(method, params, 0, 0)
        try:
            return self._context.reload()
        except ConfigError as exc:
            raise ServiceError("invalid_config", str(exc)) from None

    def _hello(self, msgid: int, method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        version, opts = _unpack(method, params, 1, 2)
        if type(version) is not int:
            raise ServiceError("bad_request", "hello: protocol_version must be an int")
        if opts is not None and not isinstance(opts, Mapping):
            raise ServiceError("bad_request", "hello: opts must be a map")
        status = self._access.hello(opts or {})
        if status != "ok":
            self.close_requested = status == "close"
            raise ServiceError("unauthorized", FAILED_HELLO_MESSAGE)
        if version != PROTOCOL_VERSION:
            raise ServiceError(
                "unsupported_version",
                f"hello: this server speaks protocol {PROTOCOL_VERSION}, not {version}",
            )
        return {
            "protocol": PROTOCOL_VERSION,
            "server": server_version(),
            "node": self._context.node,
            **self._hosts.names(),
        }

    # -- monitors (S9) -------------------------------------------------------------------

    def _monitor(self, msgid: int, method: str, params: tuple[Any, ...]) -> Any:
        name, ref = _unpack(method, params, 2, 2)
        host = self._host(method, name)
        ref = _check_ref(ref)
        self._respond(msgid, None, None)  # the answer goes out before any `down`
        if isinstance(host, Regulator):
            if ref in self._permits.get(name, {}):
                self._permit_watch.add((name, ref))
            else:
                self._down(name, ref, "noproc")
            return _LATER
        key = (name, ref)
        if key not in self._matches:
            self._down(name, ref, "noproc")
            return _LATER
        counterparty = self._matches[key]
        if counterparty is None:
            self._down(name, ref, "done")
        elif counterparty.closed:
            self._down(name, ref, "closed")
        else:
            watch = (self.id, name, ref)
            counterparty._watchers[watch] = self
            self._watching.append((counterparty, watch))
        return _LATER

    def _down(self, name: str, ref: Hashable, reason: str) -> None:
        if not self.closed:
            self._send(self._protocol.notify("down", [name, ref, reason]))

    # -- closing (S7) --------------------------------------------------------------------

    def close(self) -> None:
        """The connection closed: withdraw its queued requests, release its permits, and
        tell the sessions monitoring it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for pending, _host, _name in list(self._waiting.values()):
            try:
                pending.cancel()
            except BrokerClosed:  # pragma: no cover - a closed host has answered every pending
                pass
        for permits in self._permits.values():
            for regulator, permit in permits.values():
                try:
                    regulator.done(permit)
                except BrokerClosed:
                    pass
        self._permits.clear()
        for (_id, name, ref), watcher in self._watchers.items():
            watcher._down(name, ref, "closed")
        self._watchers.clear()
        for counterparty, watch in self._watching:
            counterparty._watchers.pop(watch, None)
        self._watching.clear()
        self._matches.clear()


def _unpack(method: str, params: tuple[Any, ...], required: int, total: int) -> list[Any]:
    """Check a params array's length; pad the optional trailing ones with ``None``."""
    if not required <= len(params) <= total:
        count = str(required) if required == total else f"{required} to {total}"
        raise ServiceError("bad_request", f"{method}: takes {count} params, got {len(params)}")
    return list(params) + [None] * (total - len(params))


Handler = Callable[[Session, int, str, tuple[Any, ...]], Any]

_METHODS: dict[str, Handler] = {
    "hello": Session._hello,
    **dict.fromkeys(_CALLS, Session._ask),
    "cancel": Session._cancel,
    "len": Session._length,
    "len_r": Session._length,
    "size": Session._length,
    "continue": Session._continue,
    "done": Session._done,
    "update": Session._update,
    "statistics": Session._statistics,
    "config": Session._config,
    "change_config": Session._change_config,
    "monitor": Session._monitor,
    "estimate": Session._estimate,
    "names": Session._names,
    "reload": Session._reload,
}
