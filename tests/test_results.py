"""Go and Drop as values (api.md Results; issue 14: cheap results, same guarantees).

They are small tuples underneath; these tests pin what a user sees: named
fields, immutability, printing, equality only with their own class, hashing,
pickling, no order, and ``match`` statements.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import trio
import trio.testing

from sbroker import Broker, Drop, Go
from sbroker._pending import FreshTag


def test_go_fields_print_and_compare_by_class() -> None:
    go = Go(ref=7, value="job", relative_time=-3, sojourn_time=0)
    assert (go.ref, go.value, go.relative_time, go.sojourn_time) == (7, "job", -3, 0)
    assert repr(go) == "Go(ref=7, value='job', relative_time=-3, sojourn_time=0)"
    assert repr(Drop(5)) == "Drop(sojourn_time=5)"
    assert go == Go(7, "job", -3, 0) and hash(go) == hash(Go(7, "job", -3, 0))
    assert go != Go(7, "job", -3, 1)
    assert go != (7, "job", -3, 0) and (7, "job", -3, 0) != go  # never a plain tuple
    assert Drop(0) == Drop(0) and Drop(0) != (0,) and Drop(0) != Go(0, 0, 0, 0)


def test_results_are_immutable_and_unordered() -> None:
    go: Any = Go(1, "v", 0, 0)
    with pytest.raises(AttributeError):
        go.value = "other"
    with pytest.raises(AttributeError):
        go.extra = 1
    with pytest.raises(TypeError):
        assert go < Go(2, "v", 0, 0)
    with pytest.raises(TypeError):
        assert Drop(1) > Drop(0)


def test_results_pickle_and_copy() -> None:
    go = Go(1, ("a", 2), 3, 4)
    assert pickle.loads(pickle.dumps(go)) == go
    assert copy.deepcopy(go) == go and type(copy.copy(Drop(2))) is Drop


def test_results_in_match_statements_positionally() -> None:
    match Go("r", "v", 5, 7):
        case Go(ref, value, relative, sojourn):
            assert (ref, value, relative, sojourn) == ("r", "v", 5, 7)
        case _:
            pytest.fail("not matched")
    match Drop(3):
        case Go():
            pytest.fail("a Drop matched Go")
        case Drop(waited):
            assert waited == 3


async def test_a_fresh_tag_given_to_a_second_request_cancels_both(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fresh tag holds its first request; another request under it is still found."""
    broker = Broker()
    first = broker.async_ask("a")
    assert type(first.tag) is FreshTag
    second = broker.async_ask("b", tag=first.tag)
    assert broker.cancel(first.tag) == 2
    assert first.cancelled and second.cancelled and broker.len() == 0
    third = broker.async_ask("c", tag=first.tag)  # the tag is free again
    matched = await broker.ask_r()
    assert isinstance(matched, Go) and matched.value == "c"
    assert third.result is not None and broker.cancel(first.tag) == 0
    broker.close()


async def test_a_fresh_tag_cancelled_on_another_broker_leaves_its_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fresh tag holds its request for its own broker only (a balancer cancels everywhere)."""
    mine, other = Broker(), Broker()
    pending = mine.async_ask("a")
    assert other.cancel(pending.tag) == 0
    assert not pending.cancelled and mine.len() == 1
    assert mine.cancel(pending.tag) == 1 and pending.cancelled
    mine.close()
    other.close()
