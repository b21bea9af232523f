"""``sbroker console [ADDR]``: an await-capable Python REPL connected to a broker service.

The connection lives in a trio run on the main thread; the interactive
console reads lines on a worker thread and runs each statement back in trio
(``trio.from_thread``), compiled with top-level ``await`` allowed, so
``await brokers["default"].len()`` works as typed. Bound names: ``conn``,
``brokers`` and ``regulators`` (name -> remote object, as at start; ``await
refresh()`` re-reads them), ``stats()`` (prints a table of every broker and
regulator), ``trio``, ``sbroker`` and the policy, meter and valve classes.

trio's own REPL (``python -m trio``) does the same but is not public API, so
this is a small :class:`code.InteractiveConsole` of its own. Ctrl-D (end of
input) or Ctrl-C quits.
"""

from __future__ import annotations

import argparse
import ast
import code
import functools
import inspect
import os
import sys
from collections.abc import Callable
from types import CodeType, FunctionType
from typing import Any

import outcome
import trio

import sbroker
from sbroker._statistics import SideStatistics
from sbroker.client import Connection, RemoteError, connect
from sbroker.service.access import TOKEN_ENV, resolve_tokens

NS_PER_MS = 1_000_000
DEFAULT_ADDRESS = "127.0.0.1:7421"
#: The names of ``sbroker`` bound in the console: policies, meters, valves, results.
EXPORTED = [
    name
    for name in sbroker.__all__
    if name.endswith(("Queue", "Meter", "Valve")) or name in ("Go", "Drop", "Stop", "NotFound")
]


class AwaitConsole(code.InteractiveConsole):
    """An interactive console whose statements run in trio, with top-level ``await``."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        super().__init__(locals=namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT

    def runcode(self, code: CodeType) -> None:
        """Run one compiled statement in the trio thread; print its traceback if it fails."""
        function = FunctionType(code, self.locals)
        result: outcome.Outcome[Any]
        if code.co_flags & inspect.CO_COROUTINE:
            result = trio.from_thread.run(outcome.acapture, function)
        else:
            result = trio.from_thread.run_sync(outcome.capture, function)
        if isinstance(result, outcome.Error):
            if isinstance(result.error, SystemExit):
                raise result.error
            error = result.error
            sys.excepthook(type(error), error, error.__traceback__)


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / NS_PER_MS:.1f}"


def format_table(rows: list[list[str]]) -> str:
    """Rows of cells as a left-aligned text table, the first row the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def _side_cells(side: SideStatistics) -> list[str]:
    return [
        str(side.waiting),
        str(side.go),
        str(side.drop),
        _ms(side.sojourn_p50),
        _ms(side.sojourn_p99),
    ]


async def statistics_table(conn: Connection) -> str:
    """Every broker's statistics (and every regulator's size and queue) as a text table."""
    names = await conn.names()
    header = ["broker", "len", "go", "drop", "p50 ms", "p99 ms", "len_r", "go_r", "drop_r"]
    rows = [header + ["p50_r ms", "p99_r ms"]]
    for name in sorted(names.get("brokers", [])):
        stats = await conn.broker(name).statistics()
        rows.append([name, *_side_cells(stats.ask), *_side_cells(stats.ask_r)])
    lines = [format_table(rows)]
    regulators = sorted(names.get("regulators", []))
    if regulators:
        table = [["regulator", "size", "len"]]
        for name in regulators:
            regulator = conn.regulator(name)
            table.append([name, str(await regulator.size()), str(await regulator.len())])
        lines.append(format_table(table))
    return "\n\n".join(lines)


def namespace(conn: Connection, names: dict[str, list[str]]) -> dict[str, Any]:
    """The console's bound names (see the module doc)."""
    bound: dict[str, Any] = {"__name__": "__console__", "trio": trio, "sbroker": sbroker}
    bound.update((name, getattr(sbroker, name)) for name in EXPORTED)

    async def refresh() -> None:
        """Re-read the server's names into ``brokers`` and ``regulators``."""
        fresh = await conn.names()
        bound["brokers"] = {name: conn.broker(name) for name in fresh.get("brokers", [])}
        bound["regulators"] = {name: conn.regulator(name) for name in fresh.get("regulators", [])}

    async def stats() -> None:
        """Print every broker's lengths, go/drop counts and sojourn p50/p99 (ms)."""
        print(await statistics_table(conn))

    bound.update(
        conn=conn,
        brokers={name: conn.broker(name) for name in names.get("brokers", [])},
        regulators={name: conn.regulator(name) for name in names.get("regulators", [])},
        refresh=refresh,
        stats=stats,
    )
    return bound


def _banner(conn: Connection, names: dict[str, list[str]]) -> str:
    server = conn.server_info.get("server", "?")
    return (
        f"sbroker console: {conn.address} (server {server})\n"
        f"brokers: {', '.join(names.get('brokers', [])) or '-'}; "
        f"regulators: {', '.join(names.get('regulators', [])) or '-'}\n"
        'bound: conn, brokers, regulators, stats(), refresh(); use "await" directly; '
        "Ctrl-D quits."
    )


async def run_console(
    address: str,
    *,
    token: str | None = None,
    make_console: Callable[[dict[str, Any]], code.InteractiveConsole] = AwaitConsole,
) -> None:
    """Connect to ``address`` and run the console until end of input."""
    async with connect(address, token=token) as conn:
        names = await conn.names()
        console = make_console(namespace(conn, names))
        interact = functools.partial(console.interact, _banner(conn, names), "")
        await trio.to_thread.run_sync(interact, abandon_on_cancel=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``console`` subcommand's arguments."""
    parser.add_argument(
        "address",
        nargs="?",
        default=DEFAULT_ADDRESS,
        help=f"HOST:PORT or unix:PATH ({DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--token-file", help=f"a file holding the token (default: ${TOKEN_ENV}, if set)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``sbroker console``: connect, then read and run statements until end of input.

    Returns the exit status: 0, or 1 (with a one-line message) if the
    connection cannot be made.
    """
    try:  # the server's own token sources (A6), less the config file
        token = resolve_tokens(
            token_file=args.token_file,
            environ=os.environ,
            config_token=None,
            config_admin_token=None,
        ).token
    except (OSError, ValueError) as exc:
        print(f"sbroker console: {exc}", file=sys.stderr)
        return 2
    try:
        import readline  # noqa: F401  (line editing and history, where available)
    except ImportError:
        pass
    try:
        trio.run(functools.partial(run_console, args.address, token=token))
    except (OSError, RemoteError) as exc:
        print(f"sbroker console: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


__all__ = [
    "AwaitConsole",
    "add_arguments",
    "format_table",
    "namespace",
    "run",
    "run_console",
    "statistics_table",
]
