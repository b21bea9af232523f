"""A real resource behind ``sbroker.open_pool``: sqlite3 connections used from threads.

sqlite3 calls block, so every call on a connection runs in a worker thread
with ``trio.to_thread.run_sync``; the pool makes sure that one connection is
used by one task (and so one thread) at a time. Clients insert rows
concurrently; a connection that raised ``sqlite3.ProgrammingError`` or
``sqlite3.InterfaceError`` in a checkout block is unusable and is replaced,
and ``check`` pings a connection before it goes back to the pool.

Run it: ``python examples/sqlite_pool.py`` (a database in a temporary
directory, a second or two on the real clock).
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

import sbroker


async def connect(path: Path) -> sqlite3.Connection:
    """Open a connection that worker threads may use (one at a time)."""

    def open_connection() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        return conn

    return await trio.to_thread.run_sync(open_connection)


async def close(conn: sqlite3.Connection) -> None:
    """Close a connection in a worker thread."""
    await trio.to_thread.run_sync(conn.close)


async def check(conn: sqlite3.Connection) -> bool:
    """A connection is healthy if it answers ``SELECT 1``."""
    row = await trio.to_thread.run_sync(lambda: conn.execute("SELECT 1").fetchone())
    return bool(row == (1,))


def insert(conn: sqlite3.Connection, client: int, n: int) -> None:
    """One client's insert, committed (runs in a worker thread)."""
    with conn:
        conn.execute("INSERT INTO events (client, n) VALUES (?, ?)", (client, n))


@dataclass(frozen=True)
class Result:
    """What :func:`run` observed."""

    rows: int  # rows in the table at the end
    inserted: int  # inserts the clients completed
    dropped: int  # checkouts dropped
    statistics: sbroker.PoolStatistics


async def run(path: Path, *, clients: int = 20, inserts: int = 10, max_size: int = 4) -> Result:
    """``clients`` tasks each insert ``inserts`` rows through a pool of at most ``max_size``."""
    setup = await connect(path)
    await trio.to_thread.run_sync(
        setup.execute, "CREATE TABLE IF NOT EXISTS events (client INTEGER, n INTEGER)"
    )
    await close(setup)
    inserted = dropped = 0
    async with sbroker.open_pool(
        functools.partial(connect, path),
        close,
        check=check,
        max_size=max_size,
        discard_on=(sqlite3.ProgrammingError, sqlite3.InterfaceError),
    ) as pool:

        async def client(number: int) -> None:
            nonlocal inserted, dropped
            for n in range(inserts):
                try:
                    async with pool.checkout() as conn:
                        await trio.to_thread.run_sync(insert, conn, number, n)
                except sbroker.Dropped:
                    dropped += 1
                else:
                    inserted += 1

        async with trio.open_nursery() as nursery:
            for number in range(clients):
                nursery.start_soon(client, number)
        async with pool.checkout() as conn:
            (rows,) = await trio.to_thread.run_sync(
                lambda: conn.execute("SELECT COUNT(*) FROM events").fetchone()
            )
        statistics = pool.statistics()
    return Result(rows, inserted, dropped, statistics)


def main(argv: Sequence[str] | None = None) -> Result:
    """Run against a database in a temporary directory and print what happened."""
    del argv  # no options
    with tempfile.TemporaryDirectory() as directory:
        result = trio.run(run, Path(directory) / "events.db")
    print(f"{result.inserted} rows inserted, {result.dropped} checkouts dropped")
    print(result.statistics)
    return result


if __name__ == "__main__":
    main()
