"""protocol.md section 5: config objects <-> maps, one function pair."""

from __future__ import annotations

from typing import Any

import pytest

from sbroker import (
    AdaptiveQueue,
    CodelQueue,
    CodelValve,
    DropQueue,
    FairQueue,
    OpenValve,
    OverloadMeter,
    PieMeter,
    RateValve,
    Regulator,
    RelativeValve,
    TimeoutQueue,
    UnderloadMeter,
    UpdateMeter,
)
from sbroker.service.config_maps import (
    MAP_NAMES,
    ItemKey,
    from_map,
    host_from_map,
    host_to_map,
    to_map,
)

OBJECTS: list[tuple[str, object]] = [
    ("policy", DropQueue(out="lifo", drop="head", max_len=3)),
    ("policy", TimeoutQueue(timeout=None, min_len=1)),
    ("policy", CodelQueue(target=0.05, interval=0.5)),
    ("policy", AdaptiveQueue(out="adaptive", timeout=2)),
    ("policy", FairQueue(queue=TimeoutQueue(timeout=1.0), key=ItemKey(0), buckets=8)),
    ("policy", FairQueue(key=ItemKey("tenant"))),
    ("policy", FairQueue()),
    ("meter", OverloadMeter(target=0.2)),
    ("meter", UnderloadMeter(target=-0.1)),
    ("meter", PieMeter(ask={"target": 0.2}, update=0.5, max_len=10)),
    ("valve", OpenValve(max_size=4)),
    ("valve", RelativeValve(target=-0.1, min_size=1, max_size=None)),
    ("valve", CodelValve(target=0.1, interval=0.5)),
    ("valve", RateValve(limit=5, interval=0.1)),
]


@pytest.mark.parametrize(("kind", "obj"), OBJECTS, ids=lambda x: repr(x)[:40])
def test_round_trip(kind: Any, obj: object) -> None:
    data = to_map(obj)
    assert data[kind] in MAP_NAMES[kind]
    assert from_map(data, kind, "here") == obj
    assert to_map(from_map(data, kind, "here")) == data


def test_infinity_is_read_from_inf_and_nil_and_written_as_nil() -> None:
    # section 5
    assert from_map({"policy": "timeout", "timeout": float("inf")}, "policy", "w") == TimeoutQueue(
        timeout=None
    )
    assert from_map({"policy": "timeout", "timeout": None}, "policy", "w") == TimeoutQueue(
        timeout=None
    )
    assert to_map(TimeoutQueue(timeout=None))["timeout"] is None


def test_absent_parameters_take_the_defaults() -> None:
    assert from_map({"policy": "codel"}, "policy", "w") == CodelQueue()
    assert from_map({"valve": "open"}, "valve", "w") == OpenValve()


def test_fair_key_forms() -> None:
    assert to_map(FairQueue())["key"] == "value"
    assert from_map({"policy": "fair", "key": "value"}, "policy", "w") == FairQueue()
    fair = from_map({"policy": "fair", "key": ("item", 1)}, "policy", "w")
    assert isinstance(fair, FairQueue) and fair.key == ItemKey(1)
    assert ItemKey(1)(("a", "b")) == "b"
    assert ItemKey("t")({"t": 3}) == 3
    assert ItemKey(5)(("a",)) is None  # no such element: the shared sub-queue
    assert ItemKey(0)(([1],)) is None  # unhashable element
    with pytest.raises(TypeError, match="no map form"):
        to_map(FairQueue(key=len))


def test_update_meter_targets_by_regulator_name() -> None:
    pool = Regulator()
    names = {"pool": pool}
    data = {"meter": "update", "targets": [["pool", "ask_r"], ["pool", "ask", 0.5]]}
    meter = from_map(data, "meter", "w", resolve_regulator=names.__getitem__)
    assert meter == UpdateMeter([(pool, "ask_r", 0.1), (pool, "ask", 0.5)])
    assert to_map(meter, regulator_name=lambda regulator: "pool")["targets"] == [
        ["pool", "ask_r", 0.1],
        ["pool", "ask", 0.5],
    ]
    with pytest.raises(ValueError, match=r"^w.targets\[0\]: .*'nope'"):
        from_map(
            {"meter": "update", "targets": [["nope", "ask"]]},
            "meter",
            "w",
            resolve_regulator=names.__getitem__,
        )
    with pytest.raises(ValueError, match="cannot be resolved"):
        from_map(data, "meter", "w")


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"policy": "codel", "target": -1}, ValueError, r"^f \[brokers.db\] ask: target"),
        ({"policy": "nope"}, ValueError, r"ask.policy: must be one of"),
        ({"policy": "codel", "tgt": 1}, ValueError, r"ask.tgt: 'codel' has no such"),
        ({"timeout": 1}, ValueError, r"no 'policy' key"),
        ({"policy": "fair", "key": ["item", 1.5]}, TypeError, r"ask.key: the item index"),
        ({"policy": "fair", "key": "bucket"}, ValueError, r"ask.key: must be"),
        ({"policy": "fair", "queue": {"policy": "fair"}}, TypeError, r"ask: queue must not"),
        ({"policy": "fair", "queue": {"policy": "codel", "interval": 0}}, ValueError, "queue"),
        ({"policy": "timeout", "timeout": "5"}, TypeError, r"ask: timeout"),
        ([1, 2], TypeError, r"ask: must be a map"),
    ],
)
def test_errors_name_where(data: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        from_map(data, "policy", "f [brokers.db] ask")


def test_host_maps() -> None:
    where = "f [brokers.db]"
    kwargs = host_from_map(
        {"ask": {"policy": "drop"}, "meters": [{"meter": "overload"}]}, "broker", where
    )
    assert kwargs == {"ask": DropQueue(), "meters": [OverloadMeter()]}
    assert host_to_map(kwargs) == {
        "ask": to_map(DropQueue()),
        "meters": [to_map(OverloadMeter())],
    }
    with pytest.raises(ValueError, match=r"^f \[brokers.db\] queue: a broker has no"):
        host_from_map({"queue": {"policy": "drop"}}, "broker", where)
    with pytest.raises(TypeError, match=r"meters: must be a list"):
        host_from_map({"meters": {"meter": "pie"}}, "regulator", where)
    with pytest.raises(ValueError, match=r"meters\[1\]\.meter: must be one of"):
        host_from_map({"meters": [{"meter": "pie"}, {"meter": "x"}]}, "regulator", where)
    with pytest.raises(TypeError, match="on_alarm"):
        to_map(OverloadMeter(on_alarm=lambda *a: None))
