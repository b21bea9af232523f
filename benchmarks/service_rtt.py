"""Round trips per second over loopback: the broker service against Redis lists.

C client processes and W worker processes exchange values through a server
on 127.0.0.1 for ``--seconds`` per configuration (C = 1 and 8, W = 4):

* sbroker: ``sbroker serve`` (its default broker); each client loops
  ``await broker.ask(i)``, each worker loops ``await broker.ask_r(w)``. One
  round trip = one match: the client gets the worker's value and the worker
  the client's, one network round trip per side.
* Redis: ``redis-server`` (started here on a free port, stopped by pid); each
  client sends ``RPUSH jobs "<client> <i>"`` and ``BLPOP reply:<client>`` in one
  pipeline, each worker pipelines ``RPUSH reply:<client> <w>`` with its next
  ``BLPOP jobs``: the same exchange, also one network round trip per side (the
  strongest form of the Redis workload; ``--redis-unpipelined`` sends each
  command alone).

Every client records the latency of each round trip; the table gives round
trips per second (all clients) and the p50/p99 latency. If redis-server or
redis-py is missing it says so and prints sbroker's figures alone.

    python benchmarks/service_rtt.py [--seconds 3] [--clients 1 8] [--workers 4]

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

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
START_DELAY = 1.5  # s for every process to connect before the clock starts
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
def sbroker_server() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sbroker", "serve", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


@contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


# -- the roles, each run in its own process -----------------------------------------


def sbroker_role(role: str, address: str, ident: int, start: float, seconds: float) -> None:
    import trio

    import sbroker.client

    async def run() -> list[float]:
        latencies: list[float] = []
        async with sbroker.client.connect(address) as conn:
            broker = conn.broker("default")
            await trio.sleep(max(0.0, start - time.time()))
            end = time.perf_counter() + seconds
            if role == "worker":
                while True:
                    await broker.ask_r(ident)
            i = 0
            while (sent := time.perf_counter()) < end:
                await broker.ask(i)
                latencies.append(time.perf_counter() - sent)
                i += 1
        return latencies

    print(json.dumps(trio.run(run)))


def redis_role(
    role: str, address: str, ident: int, start: float, seconds: float, pipelined: bool
) -> None:
    import redis

    host, port = address.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    time.sleep(max(0.0, start - time.time()))
    end = time.perf_counter() + seconds
    if role == "worker":
        job = r.blpop(["jobs"])
        while True:
            client = job[1].split()[0].decode()  # type: ignore[index]
            if pipelined:
                pipe = r.pipeline(transaction=False)
                pipe.rpush(f"reply:{client}", ident)
                pipe.blpop(["jobs"])
                job = pipe.execute()[1]
            else:
                r.rpush(f"reply:{client}", ident)
                job = r.blpop(["jobs"])
    latencies = []
    i = 0
    while (sent := time.perf_counter()) < end:
        if pipelined:
            pipe = r.pipeline(transaction=False)
            pipe.rpush("jobs", f"{ident} {i}")
            pipe.blpop([f"reply:{ident}"])
            pipe.execute()
        else:
            r.rpush("jobs", f"{ident} {i}")
            r.blpop([f"reply:{ident}"])
        latencies.append(time.perf_counter() - sent)
        i += 1
    print(json.dumps(latencies))


# -- one configuration --------------------------------------------------------------


def run_config(
    backend: str, address: str, clients: int, workers: int, seconds: float, pipelined: bool
) -> list[float]:
    start = time.time() + START_DELAY
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def spawn(role: str, ident: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, __file__, "--role", role, "--backend", backend]
        command += ["--address", address, "--ident", str(ident), "--start", str(start)]
        command += ["--seconds", str(seconds)]
        if not pipelined:
            command.append("--redis-unpipelined")
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)

    worker_processes = [spawn("worker", w) for w in range(workers)]
    client_processes = [spawn("client", c) for c in range(clients)]
    latencies: list[float] = []
    try:
        for process in client_processes:
            out, _ = process.communicate(timeout=START_DELAY + seconds + 30)
            latencies.extend(json.loads(out))
    finally:
        for process in worker_processes + client_processes:
            stop(process)
    return latencies


def summary(latencies: list[float], seconds: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return len(ordered) / seconds, rank(0.50), rank(0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per config")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--redis-unpipelined", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["client", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["sbroker", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--ident", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pipelined = not args.redis_unpipelined
    if args.role is not None:
        if args.backend == "sbroker":
            sbroker_role(args.role, args.address, args.ident, args.start, args.seconds)
        else:
            redis_role(args.role, args.address, args.ident, args.start, args.seconds, pipelined)
        return
    missing = None
    if not os.path.exists(REDIS_SERVER) and shutil.which("redis-server") is None:
        missing = "redis-server is not installed"
    else:
        try:
            import redis  # noqa: F401
        except ImportError:
            missing = "redis-py is not installed"
    rows: dict[tuple[str, int], tuple[float, float, float]] = {}
    with sbroker_server() as address:
        for clients in args.clients:
            latencies = run_config("sbroker", address, clients, args.workers, args.seconds, True)
            rows["sbroker", clients] = summary(latencies, args.seconds)
    if missing is None:
        with redis_server() as address:
            for clients in args.clients:
                latencies = run_config(
                    "redis", address, clients, args.workers, args.seconds, pipelined
                )
                rows["redis", clients] = summary(latencies, args.seconds)
    else:
        print(f"{missing}: sbroker's figures alone", file=sys.stderr)
    redis_label = "redis" if pipelined else "redis (unpipelined)"
    print(f"W = {args.workers} worker processes, {args.seconds} s per configuration, loopback")
    print("| server | C | round trips/s | p50 ms | p99 ms | sbroker / redis |")
    print("|---|---|---|---|---|---|")
    for (backend, clients), (rate, p50, p99) in rows.items():
        ratio = ""
        if backend == "sbroker" and ("redis", clients) in rows:
            ratio = f"{rate / rows['redis', clients][0]:.2f}x"
        label = redis_label if backend == "redis" else backend
        print(f"| {label} | {clients} | {rate:,.0f} | {p50:.3f} | {p99:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
