"""The sans-I/O connection protocol, without sockets (protocol.md S2, S3, S10, S12)."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from sbroker.service.protocol import (
    MAX_MSGID,
    Fatal,
    Limits,
    Notification,
    Rejected,
    Request,
    ServerProtocol,
)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def events(protocol: ServerProtocol) -> list[Any]:
    found = []
    while (event := protocol.next_event()) is not None:
        found.append(event)
    return found


def feed(protocol: ServerProtocol, data: bytes, step: int | None = None) -> list[Any]:
    found = []
    step = step or max(len(data), 1)
    for start in range(0, len(data), step):
        protocol.receive_data(data[start : start + step])
        found += events(protocol)
    return found


def test_requests_and_notifications_byte_by_byte() -> None:
    # S2: no length prefix; any split of the stream gives the same events
    stream = pack([0, 1, "len", ["db"]]) + pack([2, "cancel_request", [1]]) + pack([0, 2, "x", []])
    for step in (1, 2, 7, len(stream)):
        protocol = ServerProtocol()
        assert feed(protocol, stream, step) == [
            Request(1, "len", ("db",)),
            Notification("cancel_request", (1,)),
            Request(2, "x", ()),
        ]


def test_values_come_back_as_sent() -> None:
    # S4: str as str, bin as bin
    protocol = ServerProtocol()
    value = {"s": "text", "b": b"\x00\xff", 1: [1.5, None, True]}
    [request] = feed(protocol, pack([0, 9, "ask", ["db", value]]))
    response = msgpack.unpackb(
        protocol.respond(9, None, request.params[1]), raw=False, strict_map_key=False
    )
    assert response == [1, 9, None, {"s": "text", "b": b"\x00\xff", 1: [1.5, None, True]}]


def test_msgid_in_flight_until_answered() -> None:
    # S3: a msgid still in flight may not be reused
    protocol = ServerProtocol()
    assert feed(protocol, pack([0, 5, "ask", []])) == [Request(5, "ask", ())]
    [rejected] = feed(protocol, pack([0, 5, "len", []]))
    assert isinstance(rejected, Rejected) and (rejected.msgid, rejected.code) == (5, "bad_request")
    assert msgpack.unpackb(protocol.reject(rejected))[:2] == [1, 5]
    assert protocol.is_in_flight(5)  # the first request still waits for its answer
    protocol.respond(5, None, 1)
    assert feed(protocol, pack([0, 5, "len", []])) == [Request(5, "len", ())]


def test_max_in_flight_overloaded() -> None:
    # S10
    protocol = ServerProtocol(Limits(max_in_flight=2))
    stream = b"".join(pack([0, msgid, "ask", []]) for msgid in range(3))
    first, second, third = feed(protocol, stream)
    assert isinstance(third, Rejected) and third.code == "overloaded"
    protocol.respond(0, None)
    assert feed(protocol, pack([0, 3, "ask", []])) == [Request(3, "ask", ())]


def test_msgid_range() -> None:
    protocol = ServerProtocol()
    assert feed(protocol, pack([0, MAX_MSGID, "m", []])) == [Request(MAX_MSGID, "m", ())]
    for bad in (-1, MAX_MSGID + 1, True, 1.0, "1"):
        [event] = feed(ServerProtocol(), pack([0, bad, "m", []]))
        assert isinstance(event, Fatal) and event.msgid is None


def test_bad_shapes_with_a_readable_msgid_are_rejected() -> None:
    # S12: an error response where a msgid can be read; the stream goes on
    protocol = ServerProtocol()
    cases = [
        [0, 1, 7, []],  # method not a str
        [0, 2, "m", {"a": 1}],  # params not an array
        [0, 3, "m"],  # too short
        [1, 4, None, None],  # a response sent to the server
        [3, 5, "m", []],  # unknown type
    ]
    found = feed(protocol, b"".join(pack(case) for case in cases))
    assert [(e.msgid, e.code) for e in found] == [(i, "bad_request") for i in range(1, 6)]
    assert protocol.in_flight == 0
    assert feed(protocol, pack([0, 6, "m", []])) == [Request(6, "m", ())]


def test_unanswerable_messages_are_fatal() -> None:
    # S12: no msgid to answer: the connection is closed
    for case in ([], 5, "x", [2, "m"], [2, 7, []], [7]):
        protocol = ServerProtocol()
        [event] = feed(protocol, pack(case) + pack([0, 1, "m", []]))
        assert isinstance(event, Fatal) and event.msgid is None
        assert events(protocol) == []  # nothing after a fatal event


def test_garbage_bytes() -> None:
    [event] = feed(ServerProtocol(), b"\xc1rest")
    assert isinstance(event, Fatal) and event.code == "bad_request"
    # bad bytes inside a request whose msgid can be read: answered
    [event] = feed(ServerProtocol(), b"\x94\x00\x07\xa3ask\xc1")
    assert isinstance(event, Fatal) and event.msgid == 7


def test_too_large_with_and_without_msgid() -> None:
    # S10: max_message_bytes; an exact fit is accepted
    limit = 100
    fits = pack([0, 1, "ask", ["x" * (limit - 10)]])
    assert len(fits) == limit
    assert feed(ServerProtocol(Limits(max_message_bytes=limit)), fits, 10)[0].msgid == 1
    over = pack([0, 2, "ask", ["x" * (limit - 9)]])
    for step in (1, 33, len(over)):
        [event] = feed(ServerProtocol(Limits(max_message_bytes=limit)), over, step)
        assert event == Fatal("too_large", f"message over {limit} bytes", 2)
    # a long array of small items, streamed: still counted as one message
    many = pack([0, 3, "ask", [list(range(120))]])
    [event] = feed(ServerProtocol(Limits(max_message_bytes=limit)), many, 8)
    assert isinstance(event, Fatal) and (event.code, event.msgid) == ("too_large", 3)
    # a declared length over the limit
    header = b"\x94\x00\x04\xa3ask\x91\xdb" + (10**6).to_bytes(4, "big")
    [event] = feed(ServerProtocol(Limits(max_message_bytes=limit)), header + b"z" * 200)
    assert (event.code, event.msgid) == ("too_large", 4)
    [event] = feed(ServerProtocol(Limits(max_message_bytes=limit)), pack("y" * 200))
    assert (event.code, event.msgid) == ("too_large", None)


def test_unpackable_result_is_internal() -> None:
    protocol = ServerProtocol()
    feed(protocol, pack([0, 1, "m", []]))
    response = msgpack.unpackb(protocol.respond(1, None, object()))
    assert response[2][0] == "internal"
    assert msgpack.unpackb(protocol.notify("down", ["db", 1, "closed"])) == [
        2,
        "down",
        ["db", 1, "closed"],
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_random_bytes_never_raise(data: bytes, step: int) -> None:
    # S12: any byte stream gives events or a fatal event, never an exception
    protocol = ServerProtocol(Limits(max_message_bytes=64, max_in_flight=4))
    found = feed(protocol, data, step)
    assert all(not isinstance(event, Fatal) for event in found[:-1])
    requests = [event for event in found if isinstance(event, Request)]
    assert protocol.in_flight == len(requests)
