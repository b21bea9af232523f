"""Access over real sockets (protocol.md section 8): tokens, the admin token, failed hellos.

The server runs in the test's nursery on 127.0.0.1 port 0; requests go through the generic
MessagePack-RPC client (the wire contract) and through ``sbroker.client`` (its token plumbing).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import access_harness
import pytest
import trio
from access_harness import ADMIN_TOKEN, TOKEN
from client_harness import CONFIG  # a broker 'default' and a regulator 'pool'
from msgpack_rpc_client import RpcClient
from service_harness import TIMEOUT, Served, serving, tmp_socket

from sbroker import Drop
from sbroker.client import Unauthorized, connect
from sbroker.service.config import load_config

no_token_logged = access_harness.no_token_logged
pytestmark = pytest.mark.usefixtures("no_token_logged")

# Every method of protocol.md section 3 but hello, with params that queue when allowed.
REQUESTS: list[tuple[str, list[Any]]] = [
    ("ask", ["default", "a", {}]),
    ("ask_r", ["default", "r", {}]),
    ("nb_ask", ["default", "a"]),
    ("nb_ask_r", ["default", "r"]),
    ("dynamic_ask", ["default", "a", {}]),
    ("dynamic_ask_r", ["default", "r", {}]),
    ("cancel", ["default", "tag"]),
    ("len", ["default"]),
    ("len_r", ["default"]),
    ("size", ["pool"]),
    ("continue", ["pool", 1]),
    ("done", ["pool", 1]),
    ("update", ["pool", 0]),
    ("statistics", ["default"]),
    ("config", ["default"]),
    ("change_config", ["default", {}]),
    ("monitor", ["default", 1]),
    ("estimate", ["default"]),
    ("names", []),
    ("reload", []),
    ("no_such_method", []),
]
ADMIN = {"change_config", "reload"}
WAITING = {"ask", "ask_r", "dynamic_ask", "dynamic_ask_r"}


async def _error_code(client: RpcClient, method: str, params: list[Any]) -> str | None:
    error, _ = await client.response(await client.start(method, *params))
    return None if error is None else str(error[0])


async def _hello(client: RpcClient, token: str | None) -> Any:
    return await client.response(
        await client.start("hello", 1, {} if token is None else {"token": token})
    )


async def _lengths(served: Served) -> tuple[int, int, int]:
    async with await served.connect() as client:
        await client.call("hello", 1, {"token": TOKEN})
        return (
            await client.call("len", "default"),
            await client.call("len_r", "default"),
            await client.call("size", "pool"),
        )


async def test_unauthorized_requests_queue_nothing() -> None:
    # A1, A5: before a valid hello every request gets unauthorized and nothing is queued
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN) as served:
            async with await served.connect() as client:
                for method, params in REQUESTS:
                    error, result = await client.response(await client.start(method, *params))
                    assert error is not None and error[0] == "unauthorized", method
                    assert TOKEN not in error[1]
                # still open, and still nothing after a failed hello
                assert (await _hello(client, "wrong"))[0][0] == "unauthorized"
                assert await _error_code(client, "ask_r", ["default", "r", {}]) == "unauthorized"
            assert await _lengths(served) == (0, 0, 0)


async def test_unauthorized_ask_matches_no_waiting_worker() -> None:
    # A1: an unauthorized ask neither queues nor takes a waiting ask_r's value
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN) as served:
            async with await served.connect() as worker, await served.connect() as intruder:
                await worker.call("hello", 1, {"token": TOKEN})
                waiting = await worker.start("ask_r", "default", "worker-1", {})
                assert await _error_code(intruder, "nb_ask", ["default", "x"]) == "unauthorized"
                assert await _lengths(served) == (0, 1, 0)
                assert waiting not in worker.responses
                await intruder.call("hello", 1, {"token": TOKEN})
                go = await intruder.call("nb_ask", "default", "x")
                assert go[0] == "go" and go[2] == "worker-1"
                assert (await worker.result(waiting))[2] == "x"


@pytest.mark.parametrize(("presented", "admin"), [(TOKEN, False), (ADMIN_TOKEN, True)])
async def test_admin_token_gates_exactly_the_admin_methods(presented: str, admin: bool) -> None:
    # A1: with admin_token set, the user token opens every method but change_config and
    # reload; the admin token opens every method.
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN, admin_token=ADMIN_TOKEN) as served:
            async with await served.connect() as client:
                hello = await client.call("hello", 1, {"token": presented})
                assert hello["protocol"] == 1
                for method, params in REQUESTS:
                    msgid = await client.start(method, *params)
                    if method in WAITING:  # allowed, it waits: withdraw it (S6)
                        await client.notify("cancel_request", msgid)
                    error, _ = await client.response(msgid)
                    code = None if error is None else error[0]
                    if method in ADMIN and not admin:
                        assert code == "unauthorized", method
                    else:
                        assert code != "unauthorized", (method, code)


async def test_only_admin_token_leaves_plain_methods_open() -> None:
    # A1: admin_token alone gates the admin methods only (protected mode still needs a token)
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, admin_token=ADMIN_TOKEN) as served:
            async with await served.connect() as client:
                assert await client.call("len", "default") == 0
                assert await _error_code(client, "reload", []) == "unauthorized"
                await client.call("hello", 1, {"token": ADMIN_TOKEN})
                assert await _error_code(client, "change_config", ["default", {}]) is None


@pytest.mark.parametrize("opts", [{}, {"token": "wrong"}, {"token": 12}])
async def test_three_failed_hellos_close_the_connection(opts: dict[str, Any]) -> None:
    # A1, A6: a missing or wrong token is a failed hello; the third closes the connection
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN) as served:
            async with await served.connect() as client, await served.connect() as other:
                await other.call("hello", 1, {"token": TOKEN})
                for _ in range(2):
                    error, _ = await client.response(await client.start("hello", 1, opts))
                    assert error[0] == "unauthorized"
                assert await _error_code(client, "len", ["default"]) == "unauthorized"
                last = await client.start("hello", 1, opts)
                assert (await client.response(last))[0][0] == "unauthorized"
                await client.closed()
                assert client.eof
                assert await other.call("len", "default") == 0  # others unaffected


async def test_other_hello_errors_do_not_count() -> None:
    # A6: only a missing or wrong token counts as a failed hello
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN) as served:
            async with await served.connect() as client:
                for _ in range(3):
                    assert await _error_code(client, "hello", ["one", {}]) == "bad_request"
                    assert await _error_code(client, "len", ["default"]) == "unauthorized"
                hello = await client.call("hello", 1, {"token": TOKEN})
                assert hello["brokers"] == ["default"]


async def test_failed_hello_does_not_take_back_access() -> None:
    # A6
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN, admin_token=ADMIN_TOKEN) as served:
            async with await served.connect() as client:
                await client.call("hello", 1, {"token": ADMIN_TOKEN})
                assert (await _hello(client, "wrong"))[0][0] == "unauthorized"
                assert await _error_code(client, "change_config", ["default", {}]) is None
                assert await client.call("len", "default") == 0


async def test_client_presents_its_token(tmp_path: Path) -> None:
    # A1: sbroker.client.connect(..., token=...) says hello with it; tokens from the file
    path = tmp_path / "sbroker.toml"
    path.write_text(f'[server]\ntoken = "{TOKEN}"\nadmin_token = "{ADMIN_TOKEN}"\n{CONFIG}')
    with trio.fail_after(TIMEOUT):
        async with serving(load_config(str(path))) as served:
            address = str(served.address)
            async with connect(address, token=TOKEN) as conn:
                assert isinstance(await conn.broker("default").nb_ask_r("w"), Drop)
                assert await conn.broker("default").len_r() == 0
                with pytest.raises(Unauthorized, match="admin token"):
                    await conn.reload()
            async with connect(address, token=ADMIN_TOKEN) as conn:
                assert (await conn.reload())["failed"] == {}


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_client_without_the_token_is_refused(token: str | None) -> None:
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN) as served:
            with pytest.raises(Unauthorized, match="token") as info:
                async with connect(str(served.address), token=token):
                    pass  # pragma: no cover
            assert TOKEN not in str(info.value)


async def test_log_lines_of_refused_connections_hold_no_token(
    no_token_logged: pytest.LogCaptureFixture,
) -> None:
    # A1: the capture sees the server's lines about a connection closed for failed hellos
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, token=TOKEN, admin_token=ADMIN_TOKEN) as served:
            async with await served.connect() as client:
                for token in (TOKEN + "x", ADMIN_TOKEN[:-1], ADMIN_TOKEN + TOKEN):
                    await client.start("hello", 1, {"token": token})
                await client.closed()
    messages = [record.getMessage() for record in no_token_logged.records]
    assert any("closed" in message for message in messages), messages


async def test_unix_socket_private_and_still_needs_the_token(tmp_path: Path) -> None:
    # A3: the service's socket is 0600; A1: a token applies to Unix connections too
    path = tmp_socket(tmp_path)
    with trio.fail_after(TIMEOUT):
        async with serving(CONFIG, unix_path=path, token=TOKEN) as served:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            async with await served.connect() as client:
                assert await _error_code(client, "len", ["default"]) == "unauthorized"
                await client.call("hello", 1, {"token": TOKEN})
                assert await client.call("len", "default") == 0
