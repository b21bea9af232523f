"""Request/reply: ``broker.call(value)`` answered by ``broker.serve(handler)`` or a ``Job``.

Every job a worker takes is answered exactly once (api.md rule 1), also when
the handler raises or the worker is cancelled; a caller cancelled mid-job
cancels only that job's handler.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import sbroker
from sbroker import Drop, Dropped, Go, Job, WorkerFailed, open_broker
from sbroker.queues import TimeoutQueue


async def double(value: int) -> int:
    await trio.sleep(0.1)
    return 2 * value


async def test_call_returns_the_reply_after_the_job_was_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker, trio.open_nursery() as nursery:
        nursery.start_soon(broker.serve, double)
        start = trio.current_time()
        assert await broker.call(21) == 42
        assert trio.current_time() - start == pytest.approx(0.1)  # served, not just matched
        assert [await broker.call(i) for i in range(3)] == [0, 2, 4]
        broker.close()  # serve returns when the broker closes


async def test_a_handler_error_answers_its_caller_and_the_worker_serves_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fragile(value: int) -> int:
        await trio.sleep(0.01)
        return 10 // value

    async with open_broker() as broker, trio.open_nursery() as nursery:
        nursery.start_soon(broker.serve, fragile)
        with pytest.raises(WorkerFailed) as failed:
            await broker.call(0)
        assert isinstance(failed.value.__cause__, ZeroDivisionError)
        assert await broker.call(5) == 2
        broker.close()


async def test_a_cancelled_worker_answers_its_caller_workerfailed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker, trio.open_nursery() as nursery:
        worker_scope = trio.CancelScope()

        async def worker() -> None:
            with worker_scope:
                await broker.serve(double)

        nursery.start_soon(worker)

        async def stop_worker_soon() -> None:
            await trio.sleep(0.05)  # mid-job
            worker_scope.cancel()

        nursery.start_soon(stop_worker_soon)
        with pytest.raises(WorkerFailed) as failed:
            await broker.call(1)
        assert isinstance(failed.value.__cause__, trio.Cancelled)
        broker.close()


async def test_a_cancelled_caller_cancels_only_its_job(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[int] = []
    finished: list[int] = []

    async def slow(value: int) -> int:
        started.append(value)
        await trio.sleep(1)
        finished.append(value)
        return value

    async with open_broker() as broker, trio.open_nursery() as nursery:
        nursery.start_soon(broker.serve, slow)
        with trio.move_on_after(0.5):
            await broker.call(1)
        assert await broker.call(2) == 2  # the same worker serves on, at once
        assert (started, finished) == ([1, 2], [2])
        broker.close()


async def test_call_raises_dropped_when_no_worker_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker(ask=TimeoutQueue(timeout=0.2)) as broker:
        with pytest.raises(Dropped) as dropped:
            await broker.call("nobody serves")
        assert dropped.value.drop == Drop(200_000_000)


async def test_a_worker_can_answer_a_job_by_hand_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker, trio.open_nursery() as nursery:

        async def worker() -> None:
            match await broker.ask_r():
                case Go(value=Job() as job):
                    assert job.value == "ping" and "waiting" in repr(job)
                    assert job.reply("pong")
                    assert not job.reply("again") and not job.fail(RuntimeError())
                    assert "answered" in repr(job)

        nursery.start_soon(worker)
        assert await broker.call("ping") == "pong"


async def test_an_abandoned_job_refuses_answers(autojump_clock: trio.testing.MockClock) -> None:
    jobs: list[Job] = []

    async with open_broker() as broker, trio.open_nursery() as nursery:

        async def worker() -> None:
            result = await broker.ask_r()
            assert isinstance(result, Go)
            jobs.append(result.value)

        nursery.start_soon(worker)
        with trio.move_on_after(0.1):
            await broker.call("x")
    (job,) = jobs
    assert job.abandoned and not job.reply("late") and "abandoned" in repr(job)


async def test_serve_rejects_a_plain_ask(autojump_clock: trio.testing.MockClock) -> None:
    async with open_broker() as broker:
        with pytest.raises(TypeError, match="handler"):
            await broker.serve(5)  # type: ignore[arg-type]
        broker.async_ask("not a job")
        with pytest.raises(TypeError, match="call"):
            await broker.serve(double)


async def test_serve_returns_when_the_broker_closes_with_the_worker_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    done: list[Any] = []
    async with open_broker() as broker, trio.open_nursery() as nursery:

        async def worker() -> None:
            await broker.serve(double)
            done.append("returned")

        nursery.start_soon(worker)
        await trio.sleep(1)
        assert broker.len_r() == 1
        broker.close()  # the waiting worker is answered Drop, then sees BrokerClosed
    assert done == ["returned"]
    with pytest.raises(sbroker.BrokerClosed):
        await broker.call(1)
