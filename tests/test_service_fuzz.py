"""Hypothesis against a real server: bad byte streams (S12) and exactly-once answers under
random interleavings of asks, cancels, cancel_request, disconnects and reloads (S3, S6, S7)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgpack_rpc_client import RpcClient
from service_harness import CONFIG as HARNESS_CONFIG
from service_harness import TIMEOUT, serving, wait_until

from sbroker.service.config import load_config

CONFIG = (
    HARNESS_CONFIG.replace("[regulators.pool]", "[regulators.fpool]")
    + '[brokers.fuzz]\nask = { policy = "timeout", timeout = inf }\n'
)
# the same queues under another class: a reload changes it and must lose nothing
CONFIG_CODEL = CONFIG.replace(
    'ask = { policy = "timeout", timeout = inf }\nask_r',
    'ask = { policy = "codel", target = 1000, interval = 1000 }\nask_r',
    1,
)


def run(test: Callable[[Path], Coroutine[Any, Any, None]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sbroker.toml"
        path.write_text(CONFIG)
        trio.run(test, path)


# -- bad byte streams ------------------------------------------------------------------------

FUZZ_METHODS = ["ask", "ask_r", "nb_ask", "len", "cancel", "monitor", "done", "continue", "hello"]


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    _containers,
    max_leaves=5,
)
requests = st.builds(
    lambda msgid, method, params: [0, msgid, method, params],
    st.integers(0, 5),
    st.sampled_from(FUZZ_METHODS),
    st.lists(st.sampled_from(["fuzz", "fpool"]) | values, max_size=3),
)
notifications = st.builds(lambda msgid: [2, "cancel_request", [msgid]], st.integers(0, 5))
messages = st.lists(requests | notifications | values, max_size=6)


@st.composite
def byte_streams(draw: st.DrawFn) -> bytes:
    """Random bytes, or valid messages with bytes flipped, cut out or inserted."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(b"".join(msgpack.packb(m, use_bin_type=True) for m in draw(messages)))
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at:]
    return bytes(data)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(streams=st.lists(byte_streams(), min_size=1, max_size=3))
def test_bad_streams_never_touch_another_connection(
    streams: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    # S12: errors or a closed connection, never a crash, never a change to other requests
    caplog.clear()

    async def body(path: Path) -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(load_config(str(path)), max_message_bytes=256) as served:
                async with await served.connect() as other:
                    waiting = [await other.start("ask", "db", n, {"tag": n}) for n in range(3)]
                    assert await other.call("len", "db") == 3
                    for stream in streams:
                        fuzzer = await served.connect()
                        try:
                            await fuzzer.send_raw(stream)
                        except trio.BrokenResourceError:
                            pass  # the server closed it already
                        await fuzzer.aclose()  # the server reads the stream to its end first
                        await wait_until(lambda: served.service.connections == 1)
                    assert await other.call("len", "db") == 3
                    for n in range(3):
                        assert (await other.call("nb_ask_r", "db", f"w{n}"))[2] == n
                        assert (await other.result(waiting[n]))[2] == f"w{n}"
                    async with await served.connect() as fresh:
                        assert (await fresh.call("names"))["brokers"] == ["db", "fuzz"]

    run(body)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors[0].getMessage()


# -- exactly once under random interleavings -------------------------------------------------

CONNECTIONS = 3
TAGS = [None, 1, 1.0, True, "t"]
slots = st.integers(0, CONNECTIONS - 1)
asks = st.tuples(st.sampled_from(["ask", "ask_r"]), slots, st.sampled_from(TAGS))
operations = st.lists(
    st.one_of(
        asks,
        asks,
        asks,
        st.tuples(st.just("cancel"), slots, st.sampled_from(TAGS[1:])),
        st.tuples(st.just("cancel_request"), slots, st.integers(0, 9)),
        st.tuples(st.just("disconnect"), slots, st.none()),
        st.tuples(st.just("reload"), st.none(), st.none()),
    ),
    min_size=4,
    max_size=25,
)


class Model:
    """What every request's answer must be: FIFO queues on both sides, per-connection tags."""

    def __init__(self) -> None:
        self.queues: dict[str, list[tuple[int, int, Any, Any]]] = {"ask": [], "ask_r": []}
        self.expected: dict[tuple[int, int], Any] = {}  # (generation, msgid) -> answer

    def request(self, side: str, generation: int, msgid: int, tag: Any, value: Any) -> None:
        other = self.queues["ask_r" if side == "ask" else "ask"]
        if other:
            their_generation, their_msgid, _tag, their_value = other.pop(0)
            self.expected[(their_generation, their_msgid)] = ("go", value)
            self.expected[(generation, msgid)] = ("go", their_value)
        else:
            self.queues[side].append((generation, msgid, tag, value))

    def remove(self, keep: Callable[[tuple[int, int, Any, Any]], bool]) -> int:
        removed = 0
        for side, queue in self.queues.items():
            kept = [entry for entry in queue if keep(entry)]
            for generation, msgid, _tag, _value in queue:
                if (generation, msgid, _tag, _value) not in kept:
                    self.expected[(generation, msgid)] = ("cancelled",)
                    removed += 1
            self.queues[side] = kept
        return removed


def same_tag(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=operations)
def test_every_request_is_answered_exactly_once(steps: list[tuple[str, Any, Any]]) -> None:
    async def body(path: Path) -> None:
        model = Model()
        with trio.fail_after(TIMEOUT):
            async with serving(load_config(str(path))) as served:
                clients: list[RpcClient] = [await served.connect() for _ in range(CONNECTIONS)]
                generations = list(range(CONNECTIONS))  # a reconnected slot is a new generation
                sent: dict[int, list[int]] = {g: [] for g in generations}
                reloads = 0
                for op, slot, arg in steps:
                    if op == "reload":
                        reloads += 1
                        path.write_text(CONFIG_CODEL if reloads % 2 else CONFIG)
                        report = await clients[0].call("reload")
                        assert report["changed"] == ["db"] and report["failed"] == {}
                        continue
                    client, generation = clients[slot], generations[slot]
                    if op in ("ask", "ask_r"):
                        opts = {} if arg is None else {"tag": arg}
                        value = [generation, len(sent[generation])]
                        msgid = await client.start(op, "db", value, opts)
                        sent[generation].append(msgid)
                        model.request(op, generation, msgid, arg, value)
                    elif op == "cancel":
                        removed = model.remove(
                            lambda e: (
                                not (
                                    e[0] == generation and e[2] is not None and same_tag(e[2], arg)
                                )
                            )  # noqa: B023
                        )
                        assert await client.call("cancel", "db", arg) == removed
                    elif op == "cancel_request" and sent[generation]:
                        target = sent[generation][arg % len(sent[generation])]
                        await client.notify("cancel_request", target)
                        model.remove(lambda e: (e[0], e[1]) != (generation, target))  # noqa: B023
                    elif op == "disconnect":
                        await client.aclose()
                        model.remove(lambda e: e[0] != generation)  # noqa: B023
                        for msgid in sent[generation]:
                            model.expected.pop((generation, msgid), None)
                        await wait_until(lambda: served.service.connections == CONNECTIONS - 1)
                        generations[slot] = max(generations) + 1
                        sent[generations[slot]] = []
                        clients[slot] = await served.connect()
                        continue
                    await client.call("len", "db")  # the request has been handled
                db = served.service.hosts.get("db")
                assert db is not None
                assert (db.len(), db.len_r()) == (
                    len(model.queues["ask"]),
                    len(model.queues["ask_r"]),
                )
                for side in ("ask", "ask_r"):
                    for generation, msgid, _tag, _value in model.queues[side]:
                        model.expected[(generation, msgid)] = ("drop",)
                served.service.stop()  # S13: every queued request is answered Drop
                for slot, client in enumerate(clients):
                    await client.closed()  # reads every response; the client checks exactly once
                    generation = generations[slot]
                    for msgid in sent[generation]:
                        error, result = client.responses.pop(msgid)
                        expected = model.expected[(generation, msgid)]
                        if expected[0] == "cancelled":
                            assert error[0] == "cancelled"
                        else:
                            assert error is None and result[0] == expected[0]
                            if expected[0] == "go":
                                assert result[2] == expected[1]
                    assert client.responses == {}
                    await client.aclose()

    run(body)


# -- wrong types in every position -----------------------------------------------------------

ALL_METHODS = [
    "hello", "ask", "ask_r", "nb_ask", "nb_ask_r", "dynamic_ask", "dynamic_ask_r", "cancel",
    "len", "len_r", "size", "continue", "done", "update", "statistics", "config",
    "change_config", "monitor", "estimate", "names", "nope",
]  # fmt: skip
names = st.sampled_from(["db", "pool", "fuzz", "fpool", "missing"])
policies = st.fixed_dictionaries(
    {"policy": st.sampled_from(["timeout", "codel", "drop", "fair", "adaptive", "x"])},
    optional={"timeout": values | st.floats(), "max_len": values, "key": values},
)
configs = st.fixed_dictionaries(
    {}, optional={"ask": policies | values, "queue": policies, "meters": values}
)
anything = names | values | configs
params = st.builds(lambda name, rest: [name, *rest], names, st.lists(anything, max_size=2)) | (
    st.lists(anything, max_size=4)
)
any_call = st.tuples(st.sampled_from(ALL_METHODS), params)
change_config_call = st.tuples(
    st.just("change_config"), st.builds(lambda name, config: [name, config], names, configs)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(any_call | change_config_call, min_size=1, max_size=12))
def test_any_params_get_exactly_one_answer_and_never_internal(
    calls: list[tuple[str, list[Any]]],
) -> None:
    # S12: wrong types anywhere get an error response; S3: exactly one response each
    async def body(path: Path) -> None:
        with trio.fail_after(TIMEOUT):
            async with serving(load_config(str(path))) as served:
                client = await served.connect()
                for msgid, (method, arguments) in enumerate(calls):
                    await client.start(method, *arguments, msgid=msgid)
                last = await client.start("names", msgid=len(calls))
                await client.result(last)  # every request above has been handled
                served.service.stop()  # S13: the waiting ones are answered Drop
            await client.closed()  # the client asserts that no msgid is answered twice
            await client.aclose()
            assert sorted(client.responses) == list(range(len(calls)))
            codes = [error[0] for error, _result in client.responses.values() if error]
            assert "internal" not in codes

    run(body)
