"""``sbroker serve`` as a separate process: invalid files, SIGHUP reload, SIGTERM shutdown (S13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from msgpack_rpc_client import RpcClient
from service_harness import TIMEOUT, connect_when_ready, tmp_socket

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
[brokers.db]
ask = { policy = "timeout", timeout = inf }
"""


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sbroker", "serve", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("SBROKER_TOKEN", None)
    return env


@contextmanager
def server_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        serve_command(*args), cwd=ROOT, env=environment(), stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()  # by pid, only if the test did not stop it
        process.wait(TIMEOUT)
        assert process.stderr is not None
        process.stderr.close()


def test_invalid_file_exits_2_naming_file_table_parameter(tmp_path: Path) -> None:
    # section 7
    path = tmp_path / "bad.toml"
    path.write_text('[brokers.db]\nask = { policy = "codel", target = "fast" }\n')
    result = subprocess.run(
        serve_command("--config", str(path)),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        timeout=TIMEOUT * 3,
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert f"{path} [brokers.db] ask: target" in stderr
    assert "Traceback" not in stderr
    missing = subprocess.run(
        serve_command("--config", str(tmp_path / "missing.toml")),
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        timeout=TIMEOUT * 3,
    )
    assert missing.returncode == 2 and b"missing.toml: cannot read" in missing.stderr


async def test_sighup_reloads_and_sigterm_answers_drop_then_exits_0(tmp_path: Path) -> None:
    # section 7 (SIGHUP), S13 (SIGTERM)
    path = tmp_path / "sbroker.toml"
    path.write_text(CONFIG)
    socket_path = tmp_socket(tmp_path)
    with server_process("--config", str(path), "--listen", f"unix:{socket_path}") as process:
        with trio.fail_after(TIMEOUT * 3):
            client = await connect_when_ready(lambda: RpcClient.connect_unix(socket_path))
            asks = [await client.start("ask", "db", n) for n in range(3)]
            assert await client.call("len", "db") == 3
            path.write_text(CONFIG + "[regulators.pool]\n")
            process.send_signal(signal.SIGHUP)
            while (await client.call("names"))["regulators"] != ["pool"]:
                await trio.sleep(0.05)
            assert await client.call("len", "db") == 3  # nothing queued lost
            process.send_signal(signal.SIGTERM)
            for msgid in asks:
                assert (await client.result(msgid))[0] == "drop"
            await client.closed()
            await client.aclose()
            assert await trio.to_thread.run_sync(process.wait, TIMEOUT) == 0
        assert process.stderr is not None
        log = process.stderr.read().decode()
        assert "reload of" in log and "stopping" in log
