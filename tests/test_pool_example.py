"""examples/pool.py: an ``sbroker.open_pool`` grows under load, shrinks after, leaks nothing.

Runs the example's core, ``run_pool``, on a shortened load profile under
MockClock (regulation.md M19, R8, R13; V4, V7, V9).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

from sbroker.regulator import CodelValve, RelativeValve, Valve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PEAK = 300.0
#: Quiet for 1 s, ramp to the peak over 0.5 s, hold it 2 s, ramp down 0.5 s, quiet 2 s.
PROFILE = ((0.0, 20.0), (1.0, 20.0), (1.5, PEAK), (3.5, PEAK), (4.0, 20.0), (6.0, 20.0))


def load_pool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pool_example", EXAMPLES / "pool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pool_example"] = module
    spec.loader.exec_module(module)
    return module


pool = load_pool()


def assert_nothing_leaked(report: Any) -> None:  # a pool.Report
    # Every connection opened was closed exactly once, by the pool.
    assert report.opened == report.closed
    assert report.open_after_shutdown == 0
    assert report.final.in_use == 0


VALVES: dict[str, Valve] = {name: pool.make_valve(name) for name in ("relative", "codel")}


@pytest.mark.parametrize("name", sorted(VALVES))
async def test_pool_grows_under_load_and_shrinks_after(
    autojump_clock: trio.testing.MockClock, name: str
) -> None:
    report = await pool.run_pool(profile=PROFILE, valve=VALVES[name], sample_every=0.25, seed=7)
    rows = report.rows
    assert [row.time for row in rows][-1] == pytest.approx(6.0)
    start = max(row.size for row in rows if row.time <= 1.0)
    peak = max(row.size for row in rows if row.rate == PEAK)
    end = max(row.size for row in rows if row.time >= 5.5)
    assert 1 <= start <= 6
    assert peak >= start + 5 and peak >= 2 * start  # grew under load
    assert peak <= 32  # max_size
    assert end <= peak // 2 and end >= 2  # shrank back, not below min_size
    # Clients got served, with bounded waits (the AdaptiveQueue drops the rest early).
    assert report.served > 500
    assert report.dropped <= 0.1 * (report.served + report.dropped)  # a 0.5 s ramp to 15x
    assert report.percentile_ms(50) <= 5
    assert report.percentile_ms(99) <= 400
    assert max(report.sojourns_ns) <= 1_000_000_000
    assert_nothing_leaked(report)
    assert report.closed > end  # the pool shrank: idle connections were closed


async def test_relative_valve_keeps_clients_waiting_less(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The RelativeValve opens at the first update below target, the CodelValve only
    # once updates have stayed below target for an interval: it reacts later, so
    # more clients wait long enough for the AdaptiveQueue to drop them.
    relative = await pool.run_pool(profile=PROFILE, valve=VALVES["relative"], seed=7)
    codel = await pool.run_pool(profile=PROFILE, valve=VALVES["codel"], seed=7)
    assert relative.percentile_ms(99) < codel.percentile_ms(99)
    assert relative.dropped < codel.dropped
    assert_nothing_leaked(relative)
    assert_nothing_leaked(codel)


@pytest.mark.parametrize("abort_after", [1.25, 2.5, 3.8])
async def test_nothing_leaks_when_cancelled_mid_checkout(
    autojump_clock: trio.testing.MockClock, abort_after: float
) -> None:
    # Cancel clients mid-checkout and waiting, while connections open and idle.
    report = await pool.run_pool(profile=PROFILE, seed=3, abort_after=abort_after)
    assert report.opened >= 2  # at least min_size connections were open
    assert_nothing_leaked(report)


def test_rate_profile_interpolates() -> None:
    assert pool.rate_at(PROFILE, -1.0) == 20.0
    assert pool.rate_at(PROFILE, 1.25) == pytest.approx(160.0)
    assert pool.rate_at(PROFILE, 2.0) == PEAK
    assert pool.rate_at(PROFILE, 9.0) == 20.0


def test_main_prints_the_timeline_and_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    report = pool.main(["--valve", "relative"])  # the full 12 s profile, on MockClock
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["time", "rate/s", "pool"]
    assert "p50" in out and "p99" in out and "open after shutdown: 0" in out
    assert len(report.rows) == 24  # every 0.5 s up to 12 s
    assert_nothing_leaked(report)


def test_make_valve_names_the_two_valves() -> None:
    assert VALVES["relative"] == RelativeValve(target=0)
    assert VALVES["codel"] == CodelValve(target=0, interval=0.1)
    with pytest.raises(ValueError, match="valve"):
        pool.make_valve("rate")
