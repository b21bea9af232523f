"""Which trio run a host belongs to, checked on every call for the price of a thread id.

A broker or regulator reads the clock of the one trio run it belongs to;
times from two runs' clocks cannot be compared. The obvious check,
``trio.lowlevel.current_clock() is host_clock``, goes through trio's
thread-local run context and costs more than the rest of reading the time,
twice per match. So a host keeps the :class:`RunMark` of its run instead: the
run's clock and the thread it runs in. trio calls an instrument of ours when
the run ends, which clears the thread. As trio runs at most one run per
thread at a time, a call comes from the host's run exactly when it comes from
the mark's thread while the mark is live: ``mark.thread == current_thread()``.
Any other call takes the slow path (:func:`current_run_mark`), which binds an
unbound host or tells the caller it is in another run.

Only public trio API is used: ``trio.lowlevel.RunVar``, ``add_instrument`` and
``current_clock``.
"""

from __future__ import annotations

import threading

import trio

#: The id of the calling thread (a C function: cheap enough for every call).
current_thread = threading.get_ident


class RunMark:
    """One trio run as hosts see it: its clock and its thread (``None`` once it ended)."""

    __slots__ = ("clock", "thread")

    def __init__(self, clock: trio.abc.Clock | None, thread: int | None) -> None:
        self.clock = clock
        self.thread = thread


#: The mark of a host that belongs to no run yet: it matches no thread.
UNBOUND = RunMark(None, None)


class _RunEnd(trio.abc.Instrument):
    """Clears its run's mark when the run ends, so no thread matches it any more."""

    __slots__ = ("_mark",)

    def __init__(self, mark: RunMark) -> None:
        self._mark = mark

    def after_run(self) -> None:
        """The run is over."""
        self._mark.thread = None


_RUN_MARK: trio.lowlevel.RunVar[RunMark] = trio.lowlevel.RunVar("sbroker.run_mark")


def current_run_mark() -> RunMark | None:
    """The mark of the trio run we are in (made on first use), or ``None`` outside one."""
    try:
        return _RUN_MARK.get()
    except RuntimeError:  # outside trio.run
        return None
    except LookupError:
        mark = RunMark(trio.lowlevel.current_clock(), current_thread())
        trio.lowlevel.add_instrument(_RunEnd(mark))
        _RUN_MARK.set(mark)
        return mark
