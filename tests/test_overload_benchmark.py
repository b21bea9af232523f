"""Keep benchmarks/overload.py working: its core on a tiny configuration (MockClock, ~1 s)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "overload.py"


@pytest.fixture(scope="module")
def overload() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("overload_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def runs(overload: ModuleType) -> dict:
    # 1 s of arrivals at 2x: ~800 requests per strategy, every strategy once.
    return overload.run_all([2.0], seconds=1.0, seed=3, jobs=1)


def test_every_request_is_answered_and_recorded(overload: ModuleType, runs: dict) -> None:
    assert len(runs) == len(overload.STRATEGIES)
    for run in runs.values():
        # run_one already asserts served + dropped == offered; check the bookkeeping too.
        assert sum(run.served_by_client) == len(run.waits) == len(run.served_at)
        assert sum(run.offered_by_client) == run.offered > 0
        assert all(wait >= 0 for wait in run.waits)
        assert 0.0 < run.utilisation <= 1.0


def test_deterministic(overload: ModuleType, runs: dict) -> None:
    again = overload.run_one("CodelQueue(0.01, 0.1) + PieMeter", 2.0, seconds=1.0, seed=3)
    first = runs[(2.0, "CodelQueue(0.01, 0.1) + PieMeter")]
    assert list(again.waits) == list(first.waits)
    assert again.dropped == first.dropped


def test_the_shape_of_the_results(runs: dict) -> None:
    def get(name: str) -> Any:
        return runs[(2.0, name)]

    unbounded = get("channel, unbounded wait")
    assert unbounded.served_fraction == 1.0 and unbounded.dropped == 0
    # The channel with a client timeout and a TimeoutQueue are the same FIFO with a 1 s cap
    # (the channel's waits come from float times, the broker's from integer ns: allow 1 us).
    channel, broker = get("channel + 1 s client timeout"), get("TimeoutQueue(1.0)")
    assert len(channel.waits) == len(broker.waits)
    assert all(abs(a - b) < 1000 for a, b in zip(channel.waits, broker.waits, strict=True))
    timeout_p99 = get("TimeoutQueue(1.0)").percentile_ms(0.99)
    assert get("CodelQueue(0.01, 0.1, max_len=40)").percentile_ms(0.99) < timeout_p99
    assert get("AdaptiveQueue(.., out='fifo')").percentile_ms(0.99) < timeout_p99 / 5
    assert get("AdaptiveQueue(.., out='adaptive')").percentile_ms(0.99) < timeout_p99 / 5
    for run in runs.values():
        assert run.utilisation > 0.9


def test_report_and_plot(
    overload: ModuleType, runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overload.print_report(runs)
    out = capsys.readouterr().out
    assert "Load 2x" in out and "TimeoutQueue(1.0)" in out
    assert "PASS" in out or "FAIL" in out
    path = tmp_path / "img" / "overload.png"
    overload.plot(runs, 2.0, path)
    assert path.stat().st_size > 10_000


@pytest.mark.parametrize(("targets_met", "status"), [(True, 0), (False, 1)])
def test_exit_status_follows_the_targets_and_the_docs_plot_needs_write_docs(
    overload: ModuleType,
    runs: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets_met: bool,
    status: int,
) -> None:
    plotted: list[Path] = []
    monkeypatch.setattr(overload, "run_all", lambda *args: runs)
    monkeypatch.setattr(overload, "check_targets", lambda runs: [(targets_met, "target")])
    monkeypatch.setattr(overload, "plot", lambda runs, load, path: plotted.append(path))
    argv = ["--loads", "2", "--seconds", "1", "--jobs", "1"]
    assert overload.main(argv) == status
    assert plotted == []  # the tracked plot is written only on request
    assert overload.main([*argv, "--plot", str(tmp_path / "p.png")]) == status
    assert plotted == [tmp_path / "p.png"]
    assert overload.main([*argv, "--write-docs"]) == status
    assert plotted[-1] == overload.DOCS_PLOT
