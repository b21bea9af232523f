"""examples/sqlite_pool.py: sqlite3 connections behind a pool, used from worker threads.

Runs on the real clock (the connections live in threads), every wait bounded.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import pytest
import trio
from test_examples import load_example

import sbroker

example = load_example("sqlite_pool")


async def test_concurrent_clients_insert_every_row_through_the_pool(tmp_path: Path) -> None:
    with trio.fail_after(60):
        result = await example.run(tmp_path / "events.db", clients=10, inserts=5, max_size=3)
    assert result.rows == result.inserted  # every completed insert was committed
    assert result.inserted + result.dropped == 50
    assert result.inserted > 0
    assert result.statistics.size <= 3 and result.statistics.connects <= 3 + 1
    assert result.statistics.discarded == 0


async def test_an_unusable_connection_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with trio.fail_after(60):
        async with sbroker.open_pool(
            functools.partial(example.connect, path),
            example.close,
            check=example.check,
            max_size=1,
            discard_on=(sqlite3.ProgrammingError, sqlite3.InterfaceError),
        ) as pool:
            with pytest.raises(sqlite3.ProgrammingError):
                async with pool.checkout() as broken:
                    broken.close()  # e.g. closed behind the pool's back
                    broken.execute("SELECT 1")
            async with pool.checkout() as conn:
                assert conn is not broken
                assert await example.check(conn)
            assert pool.statistics().discarded == 1


def test_main_prints_the_counts_and_the_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    result = example.main([])
    out = capsys.readouterr().out
    assert f"{result.inserted} rows inserted" in out
    assert "checkouts:" in out and "connections:" in out
