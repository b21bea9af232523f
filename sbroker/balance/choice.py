"""Choosing a host by its published sojourn estimates (regulation.md B5-B7).

Pure functions over any sequence of in-process hosts (brokers, regulators):
they read ``host.estimate(side)`` (a :class:`~sbroker.meters.BetterMeter`'s
value) and draw from an injectable ``random.Random``; no task, no I/O.

* :func:`better_choice` is Erlang's ``sbetter``: the power of two choices. Of
  two hosts drawn at random, the one whose estimate for ``side`` is lower
  wins. ``method="rand"`` spends the estimate reads on only 20 % of the picks
  (the rest are uniform), which keeps most of the gain.
* :func:`random_choice` is ``srand``: a uniform host.
* :func:`affinity_choice` is ``sscheduler``: the same host for the same task.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, TypeVar

import trio

__all__ = [
    "BETTER_SHARE",
    "EstimatingHost",
    "Loaded",
    "affinity_choice",
    "better_choice",
    "compare",
    "pick_best_of_two",
    "pick_least_loaded",
    "random_choice",
    "two_distinct",
]

#: B5: the share of picks that read estimates with ``"rand"`` and ``"affinity"``.
BETTER_SHARE = 0.2

_DEFAULT_RNG = random.Random()


class EstimatingHost(Protocol):
    """What the choice functions read of a host (a Broker or Regulator)."""

    def estimate(self, side: str) -> int | None:
        """The published sojourn estimate of ``side`` in ns, ``None`` if unmetered or closed."""
        ...


H = TypeVar("H", bound=EstimatingHost)


def _is_closed(host: object) -> bool:
    return bool(getattr(host, "_closed", False))


def compare(hosts: Sequence[H], a: int, b: int, side: str) -> H | None:
    """B6: of ``hosts[a]`` and ``hosts[b]``, the one with the lower estimate; ties go to b.

    ``None`` when neither has an estimate and one of them is closed;
    :class:`LookupError` when both are open and neither has a BetterMeter.
    """
    host_a, host_b = hosts[a], hosts[b]
    ea, eb = host_a.estimate(side), host_b.estimate(side)
    if ea is not None and (eb is None or ea < eb):
        return host_a
    if eb is not None:
        return host_b
    if _is_closed(host_a) or _is_closed(host_b):
        return None
    raise LookupError(f"no BetterMeter on {host_a!r} or {host_b!r}")


def better_choice(
    hosts: Sequence[H],
    side: str,
    method: Literal["best_of_two", "rand", "affinity"] = "best_of_two",
    rng: random.Random | None = None,
) -> H | None:
    """B5: choose a host for a request of ``side`` (``"ask"``/``"ask_r"``).

    ``None`` for no hosts; the only host without reading its estimate.
    ``"best_of_two"`` compares two distinct hosts drawn uniformly;
    ``"rand"`` does so for 20 % of the calls and otherwise returns a uniform
    host; ``"affinity"`` does so for 20 % and otherwise :func:`affinity_choice`.
    """
    if method not in ("best_of_two", "rand", "affinity"):
        raise ValueError(f"method must be 'best_of_two', 'rand' or 'affinity', got {method!r}")
    if side not in ("ask", "ask_r"):
        raise ValueError(f"side must be 'ask' or 'ask_r', got {side!r}")
    n = len(hosts)
    if n == 0:
        return None
    if n == 1:
        return hosts[0]
    rng = _DEFAULT_RNG if rng is None else rng
    if method != "best_of_two" and rng.random() >= BETTER_SHARE:
        if method == "rand":
            return hosts[rng.randrange(n)]
        return affinity_choice(hosts)
    a, b = rng.sample(range(n), 2)
    return compare(hosts, a, b, side)


def random_choice(hosts: Sequence[H], rng: random.Random | None = None) -> H | None:
    """B7 (``srand``): ``None`` if ``hosts`` is empty, else a uniform host."""
    if not hosts:
        return None
    return hosts[(_DEFAULT_RNG if rng is None else rng).randrange(len(hosts))]


def affinity_choice(hosts: Sequence[H]) -> H | None:
    """B7 (``sscheduler``): ``None`` if empty, else a host fixed by the calling trio task.

    ``hosts[id(current_task) % len(hosts)]``: the same task keeps the same
    host while the sequence is unchanged.
    """
    if not hosts:
        return None
    return hosts[id(trio.lowlevel.current_task()) % len(hosts)]


# --------------------------------------------------------------------------
# The balancer's per-policy picks (balancing.md L2), O(1) in the number of
# candidates: each indexes the candidate list at most twice.


class Loaded(Protocol):
    """A candidate of the balancer's picks: it counts its requests in flight."""

    in_flight: int


L = TypeVar("L", bound=Loaded)


def two_distinct(n: int, rng: random.Random) -> tuple[int, int]:
    """Two distinct indices below ``n`` (``>= 2``), uniformly, with two draws."""
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    return i, j + 1 if j >= i else j


def pick_least_loaded(candidates: Sequence[L], rng: random.Random) -> L:
    """Of two distinct random candidates, the one with fewer requests in flight.

    Ties go to the first drawn.
    """
    n = len(candidates)
    if n == 1:
        return candidates[0]
    i, j = two_distinct(n, rng)
    a, b = candidates[i], candidates[j]
    return a if a.in_flight <= b.in_flight else b


def pick_best_of_two(
    candidates: Sequence[L], read: Callable[[L], int | None], rng: random.Random
) -> L:
    """B5/B6 on two distinct random candidates, ``read`` giving each one's estimate.

    The lower estimate wins, ties go to the second; one without an estimate
    loses to one with; with neither, the one with fewer requests in flight.
    """
    n = len(candidates)
    if n == 1:
        return candidates[0]
    i, j = two_distinct(n, rng)
    a, b = candidates[i], candidates[j]
    ea, eb = read(a), read(b)
    if ea is not None and (eb is None or ea < eb):
        return a
    if eb is not None:
        return b
    return a if a.in_flight <= b.in_flight else b
