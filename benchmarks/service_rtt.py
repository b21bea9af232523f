"""Round trips per second over loopback: the broker service against Redis lists.

C client processes and W worker processes exchange values through a server
on 127.0.0.1 for ``--seconds`` per configuration (C = 1 and 8, W = 4):

* sbroker: ``sbroker serve`` (its default broker); each client loops
  ``await broker.ask(i)``, each worker loops ``await broker.ask_r(w)``. One
  round trip = one match: the client gets the worker's value and the worker
  the client's, one network round trip per side.
* Redis: ``redis-server`` (started here on a free port, stopped by pid), the
  same exchange through lists. A match is a hand-off, so the default Redis
  workload is one too (``--redis-workload handoff``): each worker pipelines
  ``RPUSH idle <w>`` with ``BLPOP job:<w>`` (offer its value, wait for a
  client's), each client ``BLPOP idle`` (take a worker's value: its round trip)
  pipelined with the ``RPUSH job:<w> "<client> <i>"`` of its previous round
  trip (hand its value to that worker). Per match: four commands, one network
  round trip per side, the client waiting for no more than a worker's offer,
  as with ``ask``/``ask_r``. ``--redis-workload reply`` measures request/reply
  instead: the client pipelines ``RPUSH jobs "<client> <i>"`` with ``BLPOP
  reply:<client>`` and each worker ``RPUSH reply:<client> <w>`` with its next
  ``BLPOP jobs``, so the client also waits for a worker to see its value and
  answer (a longer path than a match: compare it with ``Broker.call``, not
  ``ask``). ``--redis-unpipelined`` sends each command alone.

Every client records the latency of each round trip; the table gives round
trips per second (all clients) and the p50/p99 latency. If redis-server or
redis-py is missing it says so and prints sbroker's figures alone.

    python benchmarks/service_rtt.py [--seconds 3] [--clients 1 8] [--workers 4]
                                     [--redis-workload handoff|reply]

This prints figures; it is not a test and gates nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
START_DELAY = 0.2  # s between the last process saying "ready" and the clock starting
READY_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {READY_TIMEOUT} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (0.0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process by its pid: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@contextmanager
def sbroker_server() -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sbroker", "serve", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}", process.pid
    finally:
        stop(process)


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}", process.pid
    finally:
        stop(process)


# -- the roles, each run in its own process -----------------------------------------


def ready_then_start() -> float:
    """Tell the parent this process is connected; wait for the shared start time (stdin)."""
    print("ready", flush=True)
    return float(sys.stdin.readline())


def sbroker_role(role: str, address: str, ident: int, seconds: float) -> None:
    import trio

    import sbroker.client

    async def run() -> dict[str, object]:
        latencies: list[float] = []
        async with sbroker.client.connect(address) as conn:
            broker = conn.broker("default")
            await trio.sleep(max(0.0, ready_then_start() - time.time()))
            end = time.perf_counter() + seconds
            if role == "worker":
                while True:
                    await broker.ask_r(ident)
            i = 0
            cpu = time.process_time()
            while (sent := time.perf_counter()) < end:
                await broker.ask(i)
                latencies.append(time.perf_counter() - sent)
                i += 1
            return {"latencies": latencies, "cpu": time.process_time() - cpu}

    print(json.dumps(trio.run(run)))


def redis_role(
    role: str, address: str, ident: int, seconds: float, pipelined: bool, workload: str
) -> None:
    import redis

    host, port = address.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    r.ping()
    time.sleep(max(0.0, ready_then_start() - time.time()))
    end = time.perf_counter() + seconds

    def exchange(*commands: tuple[str, ...]) -> Any:
        """Send the commands (one pipeline, or one by one); the last one's reply."""
        if not pipelined:
            return [r.execute_command(*command) for command in commands][-1]
        pipe = r.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()[-1]

    if role == "worker":
        if workload == "handoff":
            while True:  # offer this worker's value, wait for a client's
                exchange(("RPUSH", "idle", str(ident)), ("BLPOP", f"job:{ident}", "0"))
        job = r.blpop(["jobs"])
        while True:
            client = job[1].split()[0].decode()  # type: ignore[index]
            job = exchange(("RPUSH", f"reply:{client}", str(ident)), ("BLPOP", "jobs", "0"))
    latencies = []
    i = 0
    handed: tuple[str, ...] | None = None  # handoff: the value owed to the last worker
    cpu = time.process_time()
    while (sent := time.perf_counter()) < end:
        if workload == "handoff":
            first = () if handed is None else (handed,)
            worker = exchange(*first, ("BLPOP", "idle", "0"))[1].decode()
            handed = ("RPUSH", f"job:{worker}", f"{ident} {i}")
        else:
            exchange(("RPUSH", "jobs", f"{ident} {i}"), ("BLPOP", f"reply:{ident}", "0"))
        latencies.append(time.perf_counter() - sent)
        i += 1
    cpu = time.process_time() - cpu
    if handed is not None:
        r.execute_command(*handed)
    print(json.dumps({"latencies": latencies, "cpu": cpu}))


# -- one configuration --------------------------------------------------------------


@attrs.define
class Run:
    """What one configuration measured: every round trip's latency, and CPU seconds spent."""

    latencies: list[float]
    server_cpu: float
    client_cpu: float
    worker_cpu: float


def run_config(
    backend: str,
    server: tuple[str, int],
    clients: int,
    workers: int,
    seconds: float,
    pipelined: bool,
    workload: str,
) -> Run:
    address, server_pid = server
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def spawn(role: str, ident: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, __file__, "--role", role, "--backend", backend]
        command += ["--address", address, "--ident", str(ident)]
        command += ["--seconds", str(seconds)]
        if not pipelined:
            command.append("--redis-unpipelined")
        command += ["--redis-workload", workload]
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    worker_processes = [spawn("worker", w) for w in range(workers)]
    client_processes = [spawn("client", c) for c in range(clients)]
    run = Run([], 0.0, 0.0, 0.0)
    try:
        processes = worker_processes + client_processes
        for process in processes:  # every process connected: imports and connects not timed
            assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        start = time.time() + START_DELAY
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start}\n".encode())
            process.stdin.close()
        time.sleep(max(0.0, start - time.time()))
        run.server_cpu = -cpu_seconds(server_pid)
        run.worker_cpu = -sum(cpu_seconds(process.pid) for process in worker_processes)
        for process in client_processes:
            assert process.stdout is not None
            out = process.stdout.read()
            process.wait(timeout=seconds + 30)
            report = json.loads(out)
            run.latencies.extend(report["latencies"])
            run.client_cpu += report["cpu"]
        run.server_cpu += cpu_seconds(server_pid)
        run.worker_cpu += sum(cpu_seconds(process.pid) for process in worker_processes)
    finally:
        for process in worker_processes + client_processes:
            stop(process)
    return run


def row(label: str, clients: int, run: Run, seconds: float, ratio: str) -> str:
    """One table row: rate, latency percentiles, CPU per round trip of each side."""
    ordered = sorted(run.latencies)
    count = max(1, len(ordered))

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

    cpu = " | ".join(
        f"{1e6 * part / count:.0f}" for part in (run.server_cpu, run.client_cpu, run.worker_cpu)
    )
    figures = f"{len(ordered) / seconds:,.0f} | {rank(0.5):.3f} | {rank(0.99):.3f}"
    return f"| {label} | {clients} | {figures} | {cpu} | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per config")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis-unpipelined", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--redis-workload",
        choices=["handoff", "reply"],
        default="handoff",
        help="Redis lists as a hand-off (like ask/ask_r, the default) or request/reply",
    )
    parser.add_argument("--role", choices=["client", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["sbroker", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--ident", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pipelined = not args.redis_unpipelined
    if args.role is not None:
        if args.backend == "sbroker":
            sbroker_role(args.role, args.address, args.ident, args.seconds)
        else:
            redis_role(
                args.role, args.address, args.ident, args.seconds, pipelined, args.redis_workload
            )
        return
    missing = None
    if not os.path.exists(REDIS_SERVER) and shutil.which("redis-server") is None:
        missing = "redis-server is not installed"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            missing = "redis-py is not installed"
    runs: dict[tuple[str, int], Run] = {}
    with sbroker_server() as server:
        for clients in args.clients:
            runs["sbroker", clients] = run_config(
                "sbroker", server, clients, args.workers, args.seconds, True, args.redis_workload
            )
    if missing is None:
        with redis_server() as server:
            for clients in args.clients:
                runs["redis", clients] = run_config(
                    "redis",
                    server,
                    clients,
                    args.workers,
                    args.seconds,
                    pipelined,
                    args.redis_workload,
                )
    else:
        print(f"{missing}: sbroker's figures alone", file=sys.stderr)
    redis_label = f"redis {args.redis_workload}" + ("" if pipelined else " (unpipelined)")
    print(f"W = {args.workers} worker processes, {args.seconds} s per configuration, loopback")
    print(
        "| server | C | round trips/s | p50 ms | p99 ms "
        "| CPU us/rt: server | clients | workers | sbroker / redis |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (backend, clients), run in runs.items():
        ratio = ""
        if backend == "sbroker" and ("redis", clients) in runs:
            ratio = f"{len(run.latencies) / max(1, len(runs['redis', clients].latencies)):.2f}x"
        label = redis_label if backend == "redis" else backend
        print(row(label, clients, run, args.seconds, ratio))


if __name__ == "__main__":
    main()
