"""The endpoint table's ejection state machine, sans-I/O (balancing.md E1-E3)."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sbroker.balance import Ejection
from sbroker.balance.ejection import EndpointTable, Entry

S = 1_000_000_000


def table(
    n: int, ejection: Ejection | None = None, seed: int = 1
) -> tuple[EndpointTable, list[Entry]]:
    result = EndpointTable(Ejection() if ejection is None else ejection, random.Random(seed))
    entries = [result.add(f"e{i}", object(), 0) for i in range(n)]
    return result, [e for e in entries if e is not None]


def fail(t: EndpointTable, entry: Entry, times: int, now: int, probe: bool = False) -> None:
    for _ in range(times):
        t.failed(entry, probe, now)


def test_ejection_parameters() -> None:
    with pytest.raises(ValueError, match="after"):
        Ejection(after=0)
    with pytest.raises(ValueError, match="max_percent"):
        Ejection(max_percent=101)
    with pytest.raises(ValueError, match="max"):
        Ejection(base=10, max=5)


def test_ejected_after_consecutive_failures() -> None:
    # E1: `after` consecutive failures eject; a success in between resets the count.
    t, (a, b, c) = table(3)
    fail(t, a, 4, 0)
    t.succeeded(a, False, 0)
    fail(t, a, 4, 0)
    assert a.state == "up" and a.failures == 4
    fail(t, a, 1, 0)
    assert a.state == "ejected"
    assert a not in t.up and len(t.up) == 2
    assert a.ejected_until is not None
    assert 0.85 * 30 * S <= a.ejected_until <= 1.15 * 30 * S


def test_jittered_growing_ejection_and_decay() -> None:
    # E1: base x n capped at max, +-15 % jitter; n decays per base seconds up.
    lengths = []
    for seed in range(40):
        t, (a, _b, _c) = table(3, seed=seed)
        now = 0
        fail(t, a, 5, now)
        durations = []
        for _ in range(12):
            assert a.ejected_until is not None
            durations.append(a.ejected_until - now)
            now = a.ejected_until
            assert t.lease_probe(now) is a
            t.failed(a, True, now)  # the probe fails: re-ejected with the next n
        lengths.append(durations)
        for n, duration in enumerate(durations, start=1):
            nominal = min(30 * n, 300) * S
            assert 0.85 * nominal <= duration <= 1.15 * nominal
    firsts = {d[0] for d in lengths}
    assert len(firsts) > 30  # jittered, not constant
    # decay: reinstated with n = 3; 65 s of no failure decays n by 2
    t, (a, _b, _c) = table(3)
    fail(t, a, 5, 0)
    for _ in range(2):
        now = a.ejected_until
        assert now is not None and t.lease_probe(now) is a
        t.failed(a, True, now)
    assert a.ejections == 3
    now = a.ejected_until
    assert now is not None and t.lease_probe(now) is a
    t.succeeded(a, True, now)
    assert a.state == "up" and a.failures == 0 and a in t.up
    fail(t, a, 5, now + 65 * S)
    assert a.ejections == 2  # 3 - 2 decayed + 1
    assert a.ejected_until is not None
    assert 0.85 * 60 * S <= a.ejected_until - (now + 65 * S) <= 1.15 * 60 * S


@pytest.mark.parametrize(
    ("n", "max_percent", "ejectable"),
    [(1, 100.0, 0), (1, 50.0, 0), (2, 50.0, 1), (2, 49.0, 0), (3, 50.0, 1), (3, 67.0, 2),
     (3, 100.0, 3)],
)
def test_never_eject_beyond_max_percent(n: int, max_percent: float, ejectable: int) -> None:
    # E2: checked on the fraction after ejecting; a lone endpoint is never ejected.
    t, entries = table(n, Ejection(max_percent=max_percent, panic_below=0))
    for entry in entries:
        fail(t, entry, 10, 0)
    ejected = [e for e in entries if e.state == "ejected"]
    assert len(ejected) == ejectable
    assert all(e.failures == 5 for e in ejected)  # failures while ejected are not counted
    assert all(e.failures == 10 for e in entries if e.state == "up")


def test_panic_mode_logged_once_each(caplog: pytest.LogCaptureFixture) -> None:
    # E2: below panic_below percent up, picks use every endpoint; entry and exit logged once.
    caplog.set_level(logging.WARNING, "sbroker.balance")
    t, (a, b, c, d) = table(4, Ejection(max_percent=100, panic_below=50))
    fail(t, a, 5, 0)
    assert not t.panic and t.candidates() == t.up
    fail(t, b, 5, 0)
    assert not t.panic  # 2 of 4 up: 50 % is not below 50 %
    fail(t, c, 5, 0)
    fail(t, c, 5, 0)  # more failures change nothing
    assert t.panic and t.candidates() is t.all and len(t.all) == 4
    now = max(e.ejected_until or 0 for e in (a, b, c))
    probes = []
    while (probe := t.lease_probe(now)) is not None:
        probes.append(probe)
    assert sorted(p.key for p in probes) == ["e0", "e1", "e2"]
    t.succeeded(probes[0], True, now)
    assert not t.panic
    t.succeeded(probes[1], True, now)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "panic mode:" in m]) == 1
    assert len([m for m in messages if "panic mode over" in m]) == 1


def test_single_probe_lease_and_release() -> None:
    # E3: once the time is up exactly one pick leases the probe; release re-arms it.
    t, (a, _b, _c) = table(3)
    fail(t, a, 5, 0)
    until = a.ejected_until
    assert until is not None
    assert t.lease_probe(until - 1) is None
    assert t.lease_probe(until) is a and a.state == "probing"
    assert all(t.lease_probe(until + i) is None for i in range(100))
    t.released(a, until + 5)
    assert a.state == "ejected"
    assert t.lease_probe(until + 5) is a
    t.succeeded(a, False, until + 6)  # not the probe's answer: still probing
    assert a.state == "probing"
    t.succeeded(a, True, until + 7)
    assert a.state == "up" and a.ejected_until is None


def test_removed_entries_leave_every_list() -> None:
    t, (a, b, c) = table(3)
    fail(t, a, 5, 0)
    t.remove("e0")
    t.remove("e1")
    assert t.up == [c] and t.all == [c] and c.up_index == 0 and c.all_index == 0
    assert t.lease_probe(10**15) is None
    assert t.add("e2", object(), 0) is None  # present: nothing changes


def test_no_ejection_counts_failures() -> None:
    t = EndpointTable(None, random.Random(0))
    a = t.add("a", object(), 0)
    b = t.add("b", object(), 0)
    assert a is not None and b is not None
    fail(t, a, 50, 0)
    assert a.state == "up" and a.failures == 50


KEYS = st.sampled_from("abc")


class TableMachine(RuleBasedStateMachine):
    """Arbitrary interleavings of membership changes, outcomes, probes and time (E1-E3)."""

    def __init__(self) -> None:
        super().__init__()
        self.ejection = Ejection(after=2, base=1.0, max=4.0, max_percent=60, panic_below=50)
        self.table = EndpointTable(self.ejection, random.Random(0))
        self.now = 0
        self.probes: set[str] = set()  # keys leased and not yet answered or released

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        self.table.add(key, object(), self.now)

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        self.table.remove(key)
        self.probes.discard(key)

    @rule(key=KEYS)
    def fail(self, key: str) -> None:
        self.outcome(key, False)

    @rule(key=KEYS)
    def succeed(self, key: str) -> None:
        self.outcome(key, True)

    def outcome(self, key: str, ok: bool) -> None:
        entry = self.table.entries.get(key)
        if entry is None:
            return
        probe = key in self.probes
        self.probes.discard(key)
        before_not_up = len(self.table.all) - len(self.table.up)
        was_up = entry.state == "up"
        if ok:
            self.table.succeeded(entry, probe, self.now)
            if probe:
                assert entry.state == "up" and entry.failures == 0  # E3
        else:
            self.table.failed(entry, probe, self.now)
            if was_up and entry.state == "ejected":  # E2: checked after ejecting
                total = len(self.table.all)
                assert total > 1
                assert (before_not_up + 1) * 100 <= self.ejection.max_percent * total
            if probe:
                assert entry.state == "ejected"  # E3: a failed probe re-ejects

    @rule(key=KEYS)
    def release(self, key: str) -> None:
        entry = self.table.entries.get(key)
        if entry is not None and key in self.probes:
            self.probes.discard(key)
            self.table.released(entry, self.now)
            assert entry.state == "ejected"

    @rule()
    def lease(self) -> None:
        entry = self.table.lease_probe(self.now)
        if entry is not None:
            assert entry.key not in self.probes  # E3: one probe per ejection
            assert entry.ejected_until is not None and entry.ejected_until <= self.now
            self.probes.add(entry.key)

    @rule(seconds=st.floats(min_value=0, max_value=10))
    def advance(self, seconds: float) -> None:
        self.now += int(seconds * S)

    @invariant()
    def lists_match_states(self) -> None:
        table = self.table
        entries = list(table.entries.values())
        assert sorted(id(e) for e in table.all) == sorted(id(e) for e in entries)
        assert {id(e) for e in table.up} == {id(e) for e in entries if e.state == "up"}
        assert all(table.all[e.all_index] is e for e in entries)
        assert all(table.up[e.up_index] is e for e in table.up)
        assert {e.key for e in entries if e.state == "probing"} == self.probes
        up, total = len(table.up), len(table.all)
        assert table.panic == (total > 0 and up * 100 < self.ejection.panic_below * total)
        assert table.candidates() is (table.all if table.panic else table.up)


TestTableMachine = TableMachine.TestCase
TestTableMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
