"""``sbroker serve --processes N`` (issue 12 item 4): N servers on consecutive ports."""

from __future__ import annotations

import random
import signal
import socket
import subprocess

import trio
from msgpack_rpc_client import RpcClient
from service_harness import TIMEOUT, connect_when_ready
from test_service_cli import ROOT, environment, serve_command, server_process

from sbroker.service.listen import Address, parse_address
from sbroker.service.processes import child_addresses


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 now (checked by binding them)."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 60_000)
        sockets = []
        try:
            for candidate in (port, port + 1):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()


def test_child_addresses() -> None:
    addresses = [parse_address("127.0.0.1:7421"), parse_address("unix:/run/s.sock")]
    assert child_addresses(addresses, 0) == tuple(addresses)
    assert child_addresses(addresses, 2) == (
        Address("tcp", "127.0.0.1", 7423),
        Address("unix", path="/run/s.sock.2"),
    )


async def test_two_processes_each_serve_their_own_brokers() -> None:
    port = free_port_pair()
    with server_process("--processes", "2", "--listen", f"127.0.0.1:{port}") as process:
        with trio.fail_after(TIMEOUT * 3):
            clients = [
                await connect_when_ready(lambda p=p: RpcClient.connect(p))  # type: ignore[misc]
                for p in (port, port + 1)
            ]
            nodes = set()
            asks = []
            for client in clients:
                hello = await client.call("hello", 1, {})
                nodes.add(hello["node"])
                assert hello["brokers"] == ["default"]
                asks.append(await client.start("ask", "default", "job"))
                assert await client.call("len", "default") == 1  # its own broker
            assert len(nodes) == 2  # two server processes
            for client, ask in zip(clients, asks, strict=True):
                assert (await client.call("nb_ask_r", "default"))[2] == "job"
                assert (await client.result(ask))[0] == "go"
            process.send_signal(signal.SIGINT)  # the parent stops its children (SIGTERM by pid)
            for client in clients:
                await client.closed()
                await client.aclose()
            assert await trio.to_thread.run_sync(process.wait, TIMEOUT) == 0


def test_port_zero_is_refused() -> None:
    result = subprocess.run(
        serve_command("--processes", "2", "--listen", "127.0.0.1:0"),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        timeout=TIMEOUT * 3,
    )
    assert result.returncode == 2 and b"port 0" in result.stderr


async def test_metrics_of_every_host_over_http() -> None:
    port = free_port_pair()
    metrics = f"127.0.0.1:{port + 1}"
    with server_process("--listen", f"127.0.0.1:{port}", "--metrics", metrics) as process:
        with trio.fail_after(TIMEOUT * 3):
            client = await connect_when_ready(lambda: RpcClient.connect(port))
            assert (await client.call("nb_ask", "default"))[0] == "drop"
            stream = await trio.open_tcp_stream("127.0.0.1", port + 1)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                page = b""
                while chunk := await stream.receive_some():
                    page += chunk
            assert b'sbroker_drop_total{name="default",side="ask"} 1.0' in page
            process.send_signal(signal.SIGTERM)
            await client.closed()
            await client.aclose()
            assert await trio.to_thread.run_sync(process.wait, TIMEOUT) == 0
