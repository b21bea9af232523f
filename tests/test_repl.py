"""trio's REPL survives a broker closed from it (docs/reconfiguration.md's recipe).

The recipe is piped into ``python -m trio`` in a subprocess: the broker's
background task and a ``serve`` worker run as system tasks, and closing the
broker must end both quietly (a system task that raises would end the REPL
with ``TrioInternalError``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sbroker

RECIPE = """\
import sbroker
from sbroker.queues import DropQueue, TimeoutQueue
broker = sbroker.Broker(ask=TimeoutQueue(timeout=None))
trio.lowlevel.spawn_system_task(broker.run)
pendings = [broker.async_ask(f"job {i}") for i in range(3)]
broker.change_config(ask=DropQueue(max_len=2))
print("len", broker.len(), type(pendings[2].result).__name__)
print("matched", broker.nb_ask_r("worker 1").value, broker.nb_ask_r("worker 2").value)
async def shout(text):
    return text.upper()

trio.lowlevel.spawn_system_task(broker.serve, shout)
await broker.call("hello")
broker.close()
await trio.sleep(0.1)
await broker.call("again")
print("still alive", broker.len_r())
"""


def test_closing_a_broker_from_the_repl_leaves_the_repl_running() -> None:
    package_root = str(Path(sbroker.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    done = subprocess.run(
        [sys.executable, "-m", "trio"],
        input=RECIPE,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "len 2 Drop" in output
    assert "matched job 0 job 1" in output
    assert "'HELLO'" in output
    assert "BrokerClosed: Broker is closed" in output  # the call after close, reported
    assert "still alive 0" in output
    assert "TrioInternalError" not in output
    assert done.returncode == 0
