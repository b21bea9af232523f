"""The endpoint table: eligibility, ejection, the single probe and panic mode (balancing.md E1-E3).

Theory of operation
===================

The table is the balancer's sans-I/O core. It holds one :class:`Entry` per
endpoint and is fed outcomes (``succeeded``, ``failed``, ``released``) with
the current time in integer ns; it never sleeps or reads a clock.

*Eligibility.* Entries whose state is ``"up"`` sit in one list, every entry
in another; each entry knows its index in both, so a state change moves it in
O(1) (swap with the last element, pop). A pick indexes one of these lists:
no scan, no lock.

*Ejection (E1).* ``after`` consecutive failures eject an ``"up"`` entry for
``base x n`` seconds, capped at ``max``, with +-15 % jitter, ``n`` counting
the ejections in a row. ``n`` decays by one for every ``base`` seconds
without a failure while the entry is up; time spent ejected does not decay
it (no request went there to fail), so a failing endpoint's ejections grow.

*Never eject everyone (E2).* An ejection that would leave more than
``max_percent`` of the entries not up does not happen, and a lone entry is
never ejected. Below ``panic_below`` percent up, picks ignore ejection and
use every entry (panic mode, logged on entry and on exit).

*Single probe (E3).* Ejected entries wait in a heap by the time their
ejection ends. A pick first looks at the heap's top: if its time is up, that
pick leases it as the probe (state ``"probing"``), so however many tasks pick
at that moment exactly one probes. The probe's success reinstates the entry,
its failure ejects it again with the next ``n``, and ``released`` (the
caller was cancelled) makes it ejected-and-due again, so the next pick
probes. Only the probe's outcome moves an entry out of ejection.
"""

from __future__ import annotations

import heapq
import logging
import random
from typing import Any

import attrs

from sbroker import _validators
from sbroker._units import to_ns

__all__ = ["Ejection", "Entry", "EndpointTable"]

logger = logging.getLogger("sbroker.balance")

#: E1: the ejection time is drawn uniformly within +-15 %.
JITTER = 0.15


def _percent(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be between 0 and 100, got {value!r}")


def _positive_count(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _validators.check_count(attribute.name, value)
    if value == 0:
        raise ValueError(f"{attribute.name} must be at least 1, got 0")


@attrs.frozen
class Ejection:
    """When a failing endpoint is taken out of the rotation, and for how long.

    Args:
        after: consecutive failures (``>= 1``) that eject an endpoint.
        base: seconds (``> 0``) of the first ejection; the n-th in a row lasts
            ``base x n``; ``n`` decays by one per ``base`` seconds up without
            a failure.
        max: the cap (seconds, ``>= base``) of one ejection, before jitter.
        max_percent: at most this percentage of endpoints is ever ejected.
        panic_below: with fewer than this percentage of endpoints up, picks
            ignore ejection (panic mode).
    """

    after: int = attrs.field(default=5, validator=_positive_count)
    base: float = attrs.field(default=30.0, validator=_validators.duration(positive=True))
    max: float = attrs.field(default=300.0, validator=_validators.duration(positive=True))
    max_percent: float = attrs.field(default=50.0, validator=_percent)
    panic_below: float = attrs.field(default=50.0, validator=_percent)

    def __attrs_post_init__(self) -> None:
        if self.max < self.base:
            raise ValueError(f"max ({self.max!r}) must be >= base ({self.base!r})")


class Entry:
    """One endpoint's row: its state (E4) and its places in the table's lists.

    ``target`` is what requests go to (a host, or a remote handle), ``key``
    the endpoint as the user gave it.
    """

    __slots__ = (
        "all_index",
        "ejected_until",
        "ejections",
        "estimates",
        "estimated_at",
        "failures",
        "in_flight",
        "key",
        "last_decay",
        "last_failure",
        "removed",
        "state",
        "target",
        "up_index",
    )

    def __init__(self, key: Any, target: Any, now: int) -> None:
        self.key = key
        self.target = target
        self.state = "up"
        self.failures = 0
        self.in_flight = 0
        self.ejections = 0  # n of E1
        self.last_failure = now
        self.last_decay = now
        self.ejected_until: int | None = None
        self.estimates: tuple[int | None, int | None] = (None, None)  # remote only (L3)
        self.estimated_at: int | None = None
        self.removed = False
        self.up_index = -1
        self.all_index = -1

    def __repr__(self) -> str:
        return f"<Entry {self.key!r} {self.state} failures={self.failures}>"


def _remove_at(items: list[Entry], index: int, attribute: str) -> None:
    """Swap-remove ``items[index]`` in O(1), keeping the moved entry's index right."""
    last = items.pop()
    if index < len(items):
        items[index] = last
        setattr(last, attribute, index)


class EndpointTable:
    """The set of endpoints with their health (E1-E3); see the module docstring.

    ``ejection=None`` never ejects (failures are still counted).
    """

    def __init__(self, ejection: Ejection | None, rng: random.Random) -> None:
        self._ejection = ejection
        self._rng = rng
        self.entries: dict[Any, Entry] = {}  # insertion order: E4
        self.up: list[Entry] = []
        self.all: list[Entry] = []
        self._heap: list[tuple[int, int, Entry]] = []  # (until, seq, entry): ejected entries
        self._seq = 0
        self.panic = False
        if ejection is not None:
            self._base = to_ns(ejection.base)
            self._max = to_ns(ejection.max)

    # -- membership (D1) -----------------------------------------------------------

    def add(self, key: Any, target: Any, now: int) -> Entry | None:
        """Add an endpoint; ``None`` (and nothing changes) if ``key`` is present."""
        if key in self.entries:
            return None
        entry = Entry(key, target, now)
        self.entries[key] = entry
        entry.all_index = len(self.all)
        self.all.append(entry)
        entry.up_index = len(self.up)
        self.up.append(entry)
        self._check_panic()
        return entry

    def remove(self, key: Any) -> Entry | None:
        """Remove an endpoint (its in-flight requests are the caller's business)."""
        entry = self.entries.pop(key, None)
        if entry is None:
            return None
        entry.removed = True
        _remove_at(self.all, entry.all_index, "all_index")
        if entry.state == "up":
            _remove_at(self.up, entry.up_index, "up_index")
        self._check_panic()
        return entry

    # -- picking (E2, E3) ----------------------------------------------------------

    def lease_probe(self, now: int) -> Entry | None:
        """E3: the ejected entry whose time is up, now ``"probing"``; else ``None``."""
        heap = self._heap
        while heap:
            until, _seq, entry = heap[0]
            if entry.removed or entry.state != "ejected" or entry.ejected_until != until:
                heapq.heappop(heap)  # stale: reinstated, removed or re-ejected since
                continue
            if until > now:
                return None
            heapq.heappop(heap)
            entry.state = "probing"
            return entry
        return None

    def candidates(self) -> list[Entry]:
        """The entries a policy picks from: the up ones, or all of them in panic mode."""
        return self.all if self.panic else self.up

    # -- outcomes (E1, E3) -----------------------------------------------------------

    def succeeded(self, entry: Entry, probe: bool, now: int) -> None:
        """An answer (Go, Drop, ...) came back: the failure streak ends."""
        if entry.state == "up":
            entry.failures = 0
        elif probe:
            entry.failures = 0
            entry.ejected_until = None
            entry.last_decay = now
            self._set_up(entry)

    def failed(self, entry: Entry, probe: bool, now: int) -> None:
        """An endpoint failure (L4): count it; eject or re-eject as E1/E2 say."""
        if entry.state == "up":
            self._decay(entry, now)
            entry.failures += 1
            entry.last_failure = now
            if self._may_eject(entry):
                _remove_at(self.up, entry.up_index, "up_index")
                self._eject(entry, now)
                self._check_panic()
        elif probe:
            entry.failures += 1
            entry.last_failure = now
            self._eject(entry, now)

    def released(self, entry: Entry, now: int) -> None:
        """E3: the probe's caller was cancelled; the next pick probes again."""
        if entry.state == "probing" and not entry.removed:
            entry.state = "ejected"
            self._push(entry, now)

    # -- internals -------------------------------------------------------------------

    def _decay(self, entry: Entry, now: int) -> None:
        if self._ejection is None or entry.ejections == 0:
            return
        since = max(entry.last_failure, entry.last_decay)
        steps = (now - since) // self._base
        if steps > 0:
            entry.ejections = max(0, entry.ejections - steps)
            entry.last_decay = since + steps * self._base

    def _may_eject(self, entry: Entry) -> bool:
        """E1, E2: enough failures, and the ejected fraction after it within the cap."""
        ejection = self._ejection
        if ejection is None or entry.failures < ejection.after:
            return False
        total = len(self.all)
        not_up = total - len(self.up) + 1
        return total > 1 and not_up * 100 <= ejection.max_percent * total

    def _eject(self, entry: Entry, now: int) -> None:
        entry.ejections += 1
        length = min(self._base * entry.ejections, self._max)
        jittered = round(length * self._rng.uniform(1 - JITTER, 1 + JITTER))
        entry.state = "ejected"
        self._push(entry, now + jittered)

    def _push(self, entry: Entry, until: int) -> None:
        entry.ejected_until = until
        self._seq += 1
        heapq.heappush(self._heap, (until, self._seq, entry))

    def _set_up(self, entry: Entry) -> None:
        entry.state = "up"
        entry.up_index = len(self.up)
        self.up.append(entry)
        self._check_panic()

    def _check_panic(self) -> None:
        """E2: panic while fewer than ``panic_below`` percent are up; log each change."""
        total = len(self.all)
        panic = (
            self._ejection is not None
            and total > 0
            and len(self.up) * 100 < self._ejection.panic_below * total
        )
        if panic != self.panic:
            self.panic = panic
            if panic:
                logger.warning(
                    "balancer panic mode: %d of %d endpoints up, ignoring ejection",
                    len(self.up),
                    total,
                )
            else:
                logger.warning(
                    "balancer panic mode over: %d of %d endpoints up", len(self.up), total
                )
