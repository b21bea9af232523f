"""``sbroker console``: statements typed on piped stdin run against a live server (issue 10)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import client_harness
import trio
from client_harness import TIMEOUT, Server, served

from sbroker.queues import TimeoutQueue
from sbroker.service.console import format_table

server = client_harness.server
ROOT = Path(__file__).resolve().parent.parent


async def console(address: str, script: str) -> tuple[str, str, int]:
    """Run ``python -m sbroker console ADDRESS`` with ``script`` on stdin; its output and status."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with trio.fail_after(TIMEOUT * 3):
        process = await trio.run_process(
            [sys.executable, "-m", "sbroker", "console", address],
            stdin=script.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
            env=env,
        )
    return process.stdout.decode(), process.stderr.decode(), process.returncode


async def test_console_awaits_reconfigures_and_prints_statistics(server: Server) -> None:
    async with served(server) as conn:
        broker = conn.broker("default")
        for i in range(3):  # a busy broker: three clients waiting
            await broker.async_ask(i)
        script = "\n".join(
            [
                'b = brokers["default"]',
                "await b.len()",
                "await b.change_config(ask=CodelQueue(target=0.05, interval=0.5))",
                "go = await b.nb_ask_r('worker')",
                "go.value",
                "await stats()",
                "sorted(regulators)",
                "type((await b.config())[0]).__name__",
                "(await conn.reload())['failed']",
                "1 / 0",
                "print('still here')",
            ]
        )
        out, err, status = await console(server.address, script)
        assert status == 0, err
        assert "sbroker console" in err and "brokers: default" in err  # the banner
        lines = out.replace(">>> ", "").splitlines()
        assert "3" in lines and "0" in lines  # the length, the first waiting client's value
        header = next(line for line in lines if line.startswith("broker"))
        assert header.split()[:4] == ["broker", "len", "go", "drop"] and "p99" in header
        row = next(line for line in lines if line.startswith("default")).split()
        assert row[1:3] == ["2", "1"]  # two still waiting, one served
        assert "regulator" in out and "['pool', 'tight']" in out and "{}" in out
        assert "ZeroDivisionError" in err and "still here" in out  # an error does not end it
        assert "'CodelQueue'" in out  # changed from the console, then reloaded from the file:
        assert (await broker.config())[0] == TimeoutQueue(timeout=None)
        assert await broker.len() == 2  # queued requests kept across the change and the reload


async def test_console_reports_a_failed_connection() -> None:
    out, err, status = await console("127.0.0.1:1", "")
    assert status == 1 and "sbroker console" in err and "Traceback" not in err


def test_format_table_aligns_columns() -> None:
    table = format_table([["name", "len"], ["default", "12"]])
    assert table.splitlines() == ["name     len", "default  12"]
