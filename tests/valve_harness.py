"""Helpers shared by the valve tests (regulation.md §§7, 8).

Three parts:

* units (``ms``) and ``internals(state)``, which reads a valve state's private
  variables the way the spec tables name them;
* independent reference models of the four valves, written from V2-V13 (one
  small class per valve; ``continue_`` is modelled by V4's definition, "done,
  then ask again if open", not by each valve's pseudocode, so the two are
  checked against each other);
* :class:`ValveMachine`, a hypothesis state machine that drives a real valve
  state and its model side by side through asks (only while open, V3),
  done / continue_ on known and unknown refs, updates around the target,
  timeouts, time advances, config changes of the same class and hand-overs
  to another class (R17), checking properties 1 and 10-12 after every step.
  Each test module subclasses it with the valve class it starts from.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from sbroker.regulator import CodelValve, OpenValve, RateValve, RelativeValve, ValveState

MS = 1_000_000  # ns per millisecond (regulation.md §0)

Verdict = tuple[str, int | None]
OPEN: Verdict = ("open", None)
CLOSED: Verdict = ("closed", None)


def ms(value: int | str) -> int:
    """Milliseconds as in the spec tables to int ns; ``"2807.106781"`` is exact."""
    return int(Fraction(value) * MS)


def internals(state: Any) -> dict[str, Any]:
    """The private variables of a valve state, named as in the spec."""
    found: dict[str, Any] = {"base": state._base}
    name = type(state).__name__
    if name == "_RelativeState":
        found.update(last=state._last, updated=state._updated)
    elif name == "_CodelState":
        phase: Any = state._phase
        if phase == "waiting":
            phase = ("waiting", state._first)
        found.update(phase=phase, count=state._count, open_next=state._open_next)
    elif name == "_RateState":
        found.update(slots=list(state._slots), overflow=state._overflow)
    return found


# --------------------------------------------------------------------------
# Reference models, written from the spec text.


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


class Model:
    """What every model has: running locks, ``base``, ``min``/``max`` (V2)."""

    def __init__(self, valve: Any, running: Mapping[Hashable, Any], now: int) -> None:
        self.running = dict(running)
        self.base = now
        self.valve = valve
        self.min = getattr(valve, "min_size", 0)
        self.max = valve.max_size

    @property
    def n(self) -> int:
        return len(self.running)

    def below_max(self, k: int) -> bool:
        return self.max is None or k < self.max

    def status(self, k: int, now: int) -> Verdict:
        raise NotImplementedError

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        raise NotImplementedError

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        # V7 (RelativeValve, and CodelValve "as RelativeValve")
        if ref not in self.running:
            return False, self.status(self.n, now)
        if self.n == self.min:
            self.base = now
        del self.running[ref]
        return True, self.status(self.n, now)

    def continue_(self, ref: Hashable, now: int) -> tuple[str, int | None, Verdict]:
        """V4, literally: special cases, else done(ref) then ask(ref) if open."""
        if ref not in self.running:
            return "not_found", None, self.status(self.n, now)
        k = self.n
        if k < self.min:
            return "go", self.base, self.status(k, now)
        if k == self.min:
            return "go", now, self.status(k, now)
        owner = self.running[ref]
        _, verdict = self.done(ref, now)
        if (self.max is not None and k > self.max) or verdict[0] != "open":
            return "done", None, verdict
        open_time, verdict = self.ask(ref, owner, now)
        return "go", self.continue_open_time(open_time), verdict

    def continue_open_time(self, ask_open_time: int) -> int:
        return ask_open_time

    def update(self, value: int, now: int) -> Verdict:
        return self.status(self.n, now)

    def timeout(self, now: int) -> Verdict:
        return self.status(self.n, now)

    def config_change(self, valve: Any, now: int) -> Verdict:
        self.valve = valve
        self.min = getattr(valve, "min_size", 0)
        self.max = valve.max_size
        return self.status(self.n, now)

    def open_time(self) -> int | None:
        raise NotImplementedError

    def internals(self) -> dict[str, Any]:
        return {"base": self.base}


class OpenModel(Model):
    """V5."""

    def status(self, k: int, now: int) -> Verdict:
        return OPEN if self.below_max(k) else CLOSED

    def open_time(self) -> int | None:
        return self.base if self.below_max(self.n) else None

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        self.running[ref] = owner
        return self.base, self.status(self.n, now)

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        if ref not in self.running:
            return False, self.status(self.n, now)
        if self.n == self.max:
            self.base = now
        del self.running[ref]
        return True, self.status(self.n, now)

    def continue_(self, ref: Hashable, now: int) -> tuple[str, int | None, Verdict]:
        if ref not in self.running:
            return "not_found", None, self.status(self.n, now)
        if self.below_max(self.n):
            return "go", self.base, self.status(self.n, now)
        if self.n == self.max:
            return "go", now, self.status(self.n, now)
        return "done", None, self.done(ref, now)[1]


class RelativeModel(Model):
    """V6, V7."""

    def __init__(self, valve: Any, running: Mapping[Hashable, Any], now: int) -> None:
        super().__init__(valve, running, now)
        self.last: int | None = None
        self.updated = now

    @property
    def target(self) -> int:
        return _ns(self.valve.target)

    @property
    def fast(self) -> bool:
        return self.last is not None and self.last < self.target

    def status(self, k: int, now: int) -> Verdict:
        return OPEN if k < self.min or (self.fast and self.below_max(k)) else CLOSED

    def open_time(self) -> int | None:
        if self.n < self.min:
            return self.base
        if self.fast and self.below_max(self.n):
            return self.updated
        return None

    def update(self, value: int, now: int) -> Verdict:
        self.last = value
        self.updated = now
        return self.status(self.n, now)

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        self.running[ref] = owner
        k = self.n
        if k <= self.min:
            return self.base, self.status(k, now)
        self.last = None
        return self.updated, CLOSED

    def internals(self) -> dict[str, Any]:
        return {"base": self.base, "last": self.last, "updated": self.updated}


class CodelModel(Model):
    """V8, V9. ``phase`` is ``"idle"``, ``("waiting", first)``, ``"await"`` or ``"opening"``."""

    def __init__(self, valve: Any, running: Mapping[Hashable, Any], now: int) -> None:
        super().__init__(valve, running, now)
        self.phase: Any = "idle"
        self.count = 0
        self.open_next = now

    @property
    def target(self) -> int:
        return _ns(self.valve.target)

    @property
    def interval(self) -> int:
        return _ns(self.valve.interval)

    def status(self, k: int, now: int) -> Verdict:
        if k < self.min:
            return OPEN
        if not self.below_max(k):
            return CLOSED
        if isinstance(self.phase, tuple):
            return OPEN if now >= self.phase[1] else CLOSED
        if self.phase == "opening":
            return OPEN if now >= self.open_next else CLOSED
        return CLOSED

    def open_time(self) -> int | None:
        if self.n < self.min:
            return self.base
        if not self.below_max(self.n):
            return None
        if isinstance(self.phase, tuple):
            return int(self.phase[1])
        if self.phase == "opening":
            return self.open_next
        return None

    def update(self, value: int, now: int) -> Verdict:
        if value < self.target:
            if self.phase == "idle":
                self.phase = ("waiting", now + self.interval)
            elif self.phase == "await":
                self.phase = "opening"
        else:
            self.phase = "idle"
        return self.status(self.n, now)

    def restart(self, now: int) -> None:
        if self.count > 2 and now - self.open_next < 8 * self.interval:
            self.count -= 2
            self.open_next = now + int(self.interval / math.sqrt(self.count))
        else:
            self.count = 1
            self.open_next = now + self.interval
        self.phase = "await"

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        self.running[ref] = owner
        k = self.n
        if k < self.min:
            return self.base, OPEN
        if k == self.min:
            return self.base, self.status(k, now)
        if self.phase == "opening" and now >= self.open_next:
            t0 = self.open_next
            self.count += 1
            self.phase = "await"
            self.open_next = t0 + int(self.interval / math.sqrt(self.count))
            return t0, self.status(k, now)
        if isinstance(self.phase, tuple) and now >= self.phase[1]:
            first = self.phase[1]
            self.restart(now)
            return first, self.status(k, now)
        raise AssertionError("ask while closed: the host contract (V3) is broken")

    def config_change(self, valve: Any, now: int) -> Verdict:
        self.valve = valve
        self.min = getattr(valve, "min_size", 0)
        self.max = valve.max_size
        cap = now + self.interval
        if isinstance(self.phase, tuple):
            self.phase = ("waiting", min(self.phase[1], cap))
        self.open_next = min(self.open_next, cap)
        return self.status(self.n, now)

    def internals(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "phase": self.phase,
            "count": self.count,
            "open_next": self.open_next,
        }


class RateModel(Model):
    """V10-V13. ``appends`` logs the times at which a slot was given back."""

    def __init__(self, valve: Any, running: Mapping[Hashable, Any], now: int) -> None:
        super().__init__(valve, running, now)
        self.slots: list[int] = []
        self.overflow = 0
        self.appends: list[int] = []
        self.rebuild(0, now + self.interval)

    @property
    def limit(self) -> int:
        return int(self.valve.limit)

    @property
    def interval(self) -> int:
        return _ns(self.valve.interval)

    def rebuild(self, shift: int, fresh: int) -> None:
        k = self.limit - max(0, self.n - self.min)
        if k > 0:
            keep = [s + shift for s in self.slots[:k]]
            self.slots = keep + [fresh] * (k - len(keep))
            self.overflow = 0
        else:
            self.slots = []
            self.overflow = -k

    def status(self, k: int, now: int) -> Verdict:
        if k < self.min:
            return OPEN
        if not self.below_max(k):
            return CLOSED
        if not self.slots:
            return CLOSED
        if now < self.slots[0]:
            return ("closed", self.slots[0])
        return OPEN

    def open_time(self) -> int | None:
        next_slot = self.slots[0] if self.slots else None
        if self.n < self.min:
            return self.base if next_slot is None else min(self.base, next_slot)
        if self.below_max(self.n):
            return next_slot
        return None

    def ask(self, ref: Hashable, owner: Any, now: int) -> tuple[int, Verdict]:
        self.running[ref] = owner
        k = self.n
        if k <= self.min:
            next_slot = self.slots[0] if self.slots else math.inf
            return int(min(self.base, next_slot)), self.status(k, now)
        t0 = self.slots.pop(0)
        return t0, self.status(k, now)

    def release(self, now: int) -> None:
        if self.overflow == 0:
            self.slots.append(now + self.interval)
            self.appends.append(now)
        else:
            self.overflow -= 1

    def done(self, ref: Hashable, now: int) -> tuple[bool, Verdict]:
        if ref not in self.running:
            return False, self.status(self.n, now)
        n = self.n
        del self.running[ref]
        if n <= self.min:
            if n == self.min:
                self.base = now
            return True, OPEN
        self.release(now)
        return True, self.status(self.n, now)

    def continue_open_time(self, ask_open_time: int) -> int:
        return self.base  # V13: a granted continue reports base

    def config_change(self, valve: Any, now: int) -> Verdict:
        shift = _ns(valve.interval) - self.interval
        self.valve = valve
        self.min = valve.min_size
        self.max = valve.max_size
        self.rebuild(shift, now + self.interval)
        return self.status(self.n, now)

    def internals(self) -> dict[str, Any]:
        return {"base": self.base, "slots": list(self.slots), "overflow": self.overflow}


MODELS: dict[type, type[Model]] = {
    OpenValve: OpenModel,
    RelativeValve: RelativeModel,
    CodelValve: CodelModel,
    RateValve: RateModel,
}


# --------------------------------------------------------------------------
# Strategies: small sizes, millisecond-scale times so that ties happen.

_max_size = st.one_of(st.none(), st.integers(0, 4))
_ms_seconds = st.sampled_from([1, 2, 3, 5, 8, 13, 21, 30]).map(lambda m: m / 1000)


@st.composite
def _sized(draw: st.DrawFn) -> tuple[int, int | None]:
    low = draw(st.integers(0, 3))
    extra = draw(_max_size)
    return low, None if extra is None else low + extra


@st.composite
def _relative(draw: st.DrawFn) -> RelativeValve:
    low, high = draw(_sized())
    target = draw(st.integers(-10, 30)) / 1000
    return RelativeValve(target=target, min_size=low, max_size=high)


@st.composite
def _codel(draw: st.DrawFn) -> CodelValve:
    low, high = draw(_sized())
    target = draw(st.integers(-10, 30)) / 1000
    interval = draw(st.sampled_from([1, 2, 3, 5, 8, 12])) / 1000
    return CodelValve(target=target, interval=interval, min_size=low, max_size=high)


@st.composite
def _rate(draw: st.DrawFn) -> RateValve:
    low, high = draw(_sized())
    limit = draw(st.integers(0, 4))
    return RateValve(limit=limit, interval=draw(_ms_seconds), min_size=low, max_size=high)


CONFIGS: dict[type, st.SearchStrategy[Any]] = {
    OpenValve: st.builds(OpenValve, max_size=st.one_of(st.none(), st.integers(0, 5))),
    RelativeValve: _relative(),
    CodelValve: _codel(),
    RateValve: _rate(),
}

ANY_CONFIG = st.one_of(*CONFIGS.values())

# Hypothesis favours small integers (often 0), so time steps are mostly drawn
# from lists: openings and slots must actually come due for the machines to
# reach deep states.
_advance = st.one_of(
    st.sampled_from([0, 1, MS, 2 * MS, 3 * MS, 5 * MS, 8 * MS, 13 * MS, 21 * MS, 1000 * MS]),
    st.integers(0, 40 * MS),
)
_busy_advance = st.one_of(
    st.sampled_from([0, 1, MS, 2 * MS, 3 * MS, 4 * MS, 6 * MS, 10 * MS]),
    st.integers(0, 10 * MS),
)
_busy_delta = st.sampled_from([-3 * MS, -2 * MS, -MS, -1, -MS // 2, 0])

MACHINE_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class ValveMachine(RuleBasedStateMachine):
    """Drive a valve state and its model side by side (property 10 after every step)."""

    #: The valve class the machine starts from; set by each test module.
    start_class: type = OpenValve

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.next_ref = 0
        self.released: list[int] = []
        self.state: ValveState
        self.model: Model
        self.valve: Any = None

    # -- helpers ------------------------------------------------------------

    def _init(self, valve: Any, running: Mapping[Hashable, Any]) -> None:
        self.valve = valve
        state, verdict = valve.init(running, self.now)
        self.state = state
        self.model = MODELS[type(valve)](valve, running, self.now)
        self.init_time = self.now
        self.rebuild_time = self.now
        # property 11/12 bookkeeping
        self.starts: list[int] = []
        self.finishes: list[int] = []
        self.slot_holders: set[Hashable] = set()
        self.grants_since_fast = 0
        self._verdict(verdict, self.model.status(self.model.n, self.now))

    def _verdict(self, got: Any, want: Verdict) -> None:
        """Every operation ends here: compare the verdict with the model's, then check all."""
        assert tuple(got) == want, (got, want)
        self.verdict: Verdict = tuple(got)  # type: ignore[assignment]
        self.verdict_time = self.now
        wake = got[1]
        assert wake is None or wake >= self.now  # property 1
        self._check_model()
        self._check_host_contract()
        self._check_rate_window()

    @property
    def min(self) -> int:
        return int(getattr(self.valve, "min_size", 0))

    @property
    def max(self) -> int | None:
        return self.valve.max_size  # type: ignore[no-any-return]

    def _granted_above_min(self, ref: Hashable, open_time: int) -> None:
        """A grant that consumed an opening / a slot / a fast update (k > min)."""
        now = self.now
        if isinstance(self.valve, RateValve):
            interval = _ns(self.valve.interval)
            # V12: no start above min within the first interval of a state.
            assert now >= self.init_time + interval
            self.starts.append(now)
            in_window = [t for t in self.starts if t > now - interval]
            assert len(in_window) <= self.valve.limit  # V11
            self.slot_holders.add(ref)
        elif isinstance(self.valve, (RelativeValve, CodelValve)):
            self.grants_since_fast += 1
            assert self.grants_since_fast <= 1  # property 12
        if isinstance(self.valve, CodelValve):
            state: Any = self.state
            assert state._phase == "await"
            step = int(_ns(self.valve.interval) / math.sqrt(state._count))
            assert state._open_next in (open_time + step, now + step)  # property 12

    def _finished(self, ref: Hashable, *, restarts: bool = False) -> None:
        """The lock ``ref`` ended (or, ``restarts``, ended and took a new slot)."""
        if isinstance(self.valve, RateValve) and ref in self.slot_holders:
            if not restarts:
                self.slot_holders.discard(ref)
            self.finishes.append(self.now)
            if self.min == 0:
                interval = _ns(self.valve.interval)
                recent = [t for t in self.finishes if t > self.now - interval]
                assert len(recent) <= self.valve.limit  # property 11

    # -- rules --------------------------------------------------------------

    @initialize(data=st.data())
    def start(self, data: st.DataObject) -> None:
        valve = data.draw(CONFIGS[self.start_class])
        running = {self._fresh(): f"owner-{i}" for i in range(data.draw(st.integers(0, 4)))}
        self._init(valve, running)

    def _fresh(self) -> int:
        self.next_ref += 1
        return self.next_ref

    @rule(dt=_advance)
    def advance(self, dt: int) -> None:
        self.now += dt

    @rule(times=st.integers(1, 3))
    def ask(self, times: int) -> None:
        """Asks as a host makes them: re-evaluate a closed valve first (R6), ask only if open."""
        for _ in range(times):
            if self.verdict[0] == "closed":
                self.timeout()
            if self.verdict[0] != "open":
                return
            self._ask()

    def _ask(self) -> None:
        ref = self._fresh()
        owner = ("owner", ref)
        k = self.model.n + 1
        got = self.state.ask(ref, owner, self.now)
        open_time, verdict = self.model.ask(ref, owner, self.now)
        assert got[0] == open_time, (got, open_time)
        self._verdict(got[1], verdict)
        if k > self.min:
            self._granted_above_min(ref, open_time)

    def _pick_known(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(sorted(self.model.running)))  # type: ignore[type-var]

    def _pick_unknown(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from([-1, *self.released]))

    def _done(self, ref: int) -> None:
        known = ref in self.model.running
        got = self.state.done(ref, self.now)
        found, verdict = self.model.done(ref, self.now)
        assert got[0] is found is known
        self._verdict(got[1], verdict)
        if found:
            self.released.append(ref)
            self._finished(ref)

    @precondition(lambda self: self.model.n > 0)
    @rule(data=st.data())
    def done_known(self, data: st.DataObject) -> None:
        self._done(self._pick_known(data))

    @rule(data=st.data())
    def done_unknown(self, data: st.DataObject) -> None:
        before = dict(self.model.running), self.model.internals()
        self._done(self._pick_unknown(data))
        assert (dict(self.model.running), self.model.internals()) == before

    def _continue(self, ref: int) -> None:
        k = self.model.n
        known = ref in self.model.running
        got = self.state.continue_(ref, self.now)
        kind, open_time, verdict = self.model.continue_(ref, self.now)
        assert got[:2] == (kind, open_time), (got, kind, open_time)
        self._verdict(got[2], verdict)
        # V4
        if not known:
            assert kind == "not_found"
        elif k < self.min:
            assert kind == "go"
        elif k == self.min:
            assert (kind, open_time) == ("go", self.now)
        elif self.max is not None and k > self.max:
            assert kind == "done"
        if kind == "done":
            self.released.append(ref)
            self._finished(ref)
        elif kind == "go" and k > self.min and not isinstance(self.valve, OpenValve):
            # a granted RateValve continue gives its slot back and takes another
            self._finished(ref, restarts=True)
            assert open_time is not None
            self._granted_above_min(ref, open_time)

    @precondition(lambda self: self.model.n > 0)
    @rule(data=st.data())
    def continue_known(self, data: st.DataObject) -> None:
        self._continue(self._pick_known(data))

    @rule(data=st.data())
    def continue_unknown(self, data: st.DataObject) -> None:
        before = dict(self.model.running), self.model.internals()
        self._continue(self._pick_unknown(data))
        assert (dict(self.model.running), self.model.internals()) == before

    @rule(delta=st.one_of(st.integers(-3, 3).map(lambda m: m * MS), st.integers(-2, 2)))
    def update(self, delta: int) -> None:
        target = _ns(getattr(self.valve, "target", 0))
        value = target + delta
        self._verdict(self.state.update(value, self.now), self.model.update(value, self.now))
        if value < target:
            self.grants_since_fast = 0
        elif isinstance(self.valve, CodelValve):
            assert self.model.phase == "idle"  # property 12

    @rule(data=st.data(), rounds=st.integers(1, 8))
    def busy(self, data: st.DataObject, rounds: int) -> None:
        """A busy host: time passes, mostly-below-target updates arrive, tasks come and go."""
        for _ in range(rounds):
            self.advance(data.draw(_busy_advance))
            self.update(data.draw(_busy_delta))
            action = data.draw(st.sampled_from(["ask", "ask", "continue", "done", "none"]))
            if action == "ask":
                self.ask(1)
            elif action == "continue" and self.model.running:
                self._continue(self._pick_known(data))
            elif action == "done" and self.model.running:
                self._done(self._pick_known(data))

    @rule()
    def timeout(self) -> None:
        self._verdict(self.state.timeout(self.now), self.model.timeout(self.now))

    @rule(data=st.data(), hand_over=st.sampled_from([False, False, True]))
    def reconfigure(self, data: st.DataObject, hand_over: bool) -> None:
        """R17: a valve of the same class (config_change) or any class (hand-over)."""
        if hand_over:
            valve = data.draw(ANY_CONFIG)
            running = self.state.terminate()
            assert running == self.model.running  # property 10
            self._init(valve, running)
            return
        valve = data.draw(CONFIGS[type(self.valve)])
        self.valve = valve
        self.rebuild_time = self.now
        if isinstance(valve, RelativeValve):
            # A new target re-reads the kept last update: if it is below the
            # new target it counts as a fresh "update below target" (V7).
            self.grants_since_fast = 0
        self.starts.clear()
        self.finishes.clear()
        self.slot_holders.clear()
        self._verdict(
            self.state.config_change(valve, self.now), self.model.config_change(valve, self.now)
        )

    # -- checks after every operation ------------------------------------------

    def _check_model(self) -> None:
        state: Any = self.state
        assert state.size() == self.model.n
        assert state._running == self.model.running
        assert state.open_time() == self.model.open_time()
        assert internals(state) == self.model.internals()

    def _check_host_contract(self) -> None:
        """V3 at the time of the last verdict (property 10)."""
        status, wake = self.verdict
        t = self.verdict_time
        n = self.state.size()
        open_time = self.state.open_time()
        if status == "open":
            assert open_time is not None and open_time <= t
        else:
            assert open_time is None or open_time > t
        if n < self.min:
            assert self.verdict == OPEN
        if self.max is not None and n >= self.max:
            assert self.verdict == CLOSED
        if wake is not None:
            assert status == "closed" and wake >= t

    def _check_rate_window(self) -> None:
        """V11 and property 11 (RateValve)."""
        if not isinstance(self.valve, RateValve):
            return
        state: Any = self.state
        n = state.size()
        limit = self.valve.limit
        assert len(state._slots) - state._overflow + max(0, n - self.min) == limit
        assert state._overflow >= 0
        assert list(state._slots) == sorted(state._slots)
        status, _ = self.verdict
        t = self.verdict_time
        interval = _ns(self.valve.interval)
        if status == "closed":
            assert n >= self.min
            if (self.max is None or n < self.max) and t >= self.rebuild_time + interval:
                recent = [a for a in self.model.appends if a > t - interval]
                assert (n - self.min) + len(recent) >= limit
