"""A fake meter host and sample helpers for the sans-I/O meter tests."""

from __future__ import annotations

from typing import Any

from sbroker.meters import Protector, Sample

MS = 1_000_000  # ns per millisecond: spec tables are in ms


class FakeHost:
    """A MeterHost that records what meters do to it."""

    def __init__(self) -> None:
        self.alarms: set[str] = set()
        self.alarm_calls: list[tuple[str, bool]] = []
        self.protector: Protector | None = None
        self.protector_calls: list[Protector | None] = []

    def set_alarm(self, description: str, active: bool) -> None:
        self.alarm_calls.append((description, active))
        if active:
            self.alarms.add(description)
        else:
            self.alarms.discard(description)

    def set_protector(self, protector: Protector | None) -> None:
        self.protector_calls.append(protector)
        self.protector = protector

    def __repr__(self) -> str:
        return "<FakeHost>"


def sample(
    time: int,
    *,
    queue_delay: int = 0,
    relative_time: int = 0,
    ask_len: int = 0,
    ask_r_len: int = 0,
    process_delay: int = 0,
) -> Sample:
    """A Sample; every argument in ns."""
    return Sample(
        time=time,
        queue_delay=queue_delay,
        process_delay=process_delay,
        relative_time=relative_time,
        ask_len=ask_len,
        ask_r_len=ask_r_len,
    )


class Recorder:
    """An ``on_alarm`` callback recording its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, bool, str]] = []

    def __call__(self, host: Any, active: bool, description: str) -> None:
        self.calls.append((host, active, description))
