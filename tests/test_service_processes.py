"""Separate client and worker processes on one server; a killed worker leaves nothing behind.

The server runs in the test's trio run; the worker and the client are
``sys.executable`` processes using :mod:`sbroker.client`. Killing the worker
(SIGKILL, by pid) closes its connection: its queued ``ask_r``s leave the
queue and its permit is released (protocol.md S7).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import client_harness
import trio
from client_harness import TIMEOUT, Server, served

server = client_harness.server
ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, trio, sbroker.client

async def main(address):
    async with sbroker.client.connect(address) as conn:
        broker, pool = conn.broker("default"), conn.regulator("pool")
        for i in range(3):
            await broker.async_ask_r(f"worker-{i}")
        async with pool.permit():
            print("ready", flush=True)
            await trio.sleep_forever()

trio.run(main, sys.argv[1])
"""

CLIENT = """
import sys, trio, sbroker, sbroker.client

async def main(address):
    async with sbroker.client.connect(address) as conn:
        match await conn.broker("default").ask("job"):
            case sbroker.Go(value=value):
                print("go", value)
            case sbroker.Drop():
                print("drop")

trio.run(main, sys.argv[1])
"""


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


async def test_a_killed_worker_process_leaves_no_requests_and_no_permits(server: Server) -> None:
    async with served(server) as conn:
        broker, pool = conn.broker("default"), conn.regulator("pool")
        with trio.fail_after(TIMEOUT * 3):
            worker = await trio.lowlevel.open_process(
                [sys.executable, "-c", WORKER, server.address],
                stdout=subprocess.PIPE,
                env=child_env(),
            )
            try:
                assert worker.stdout is not None
                assert (await worker.stdout.receive_some(64)).startswith(b"ready")
                assert await broker.len_r() == 3 and await pool.size() == 1

                client = await trio.run_process(
                    [sys.executable, "-c", CLIENT, server.address],
                    capture_stdout=True,
                    env=child_env(),
                )
                assert client.stdout.decode().split() == ["go", "worker-0"]  # fifo
                assert await broker.len_r() == 2

                os.kill(worker.pid, signal.SIGKILL)  # stopped by pid
                await worker.wait()
                while await broker.len_r() != 0 or await pool.size() != 0:  # S7
                    await trio.sleep(0.01)
            finally:
                if worker.returncode is None:
                    os.kill(worker.pid, signal.SIGKILL)
                    await worker.wait()
