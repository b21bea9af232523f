"""Command line of sbroker: python -m sbroker demo (or: sbroker demo)."""

from __future__ import annotations

import argparse
import sys

from sbroker import _demo
from sbroker._arguments import positive_number
from sbroker._version import __version__
from sbroker.service import cli as service_cli
from sbroker.service import console

DEMO_DESCRIPTION = """\
Offer the same burst of clients to four workers behind one broker per ask
queue policy (TimeoutQueue, CodelQueue with and without max_len,
AdaptiveQueue), side by side in one event loop and in real time, and print how
many clients each served and how long the served ones waited.
"""


def program_name() -> str:
    """How the user started us: ``python -m sbroker`` or the ``sbroker`` script."""
    return "python -m sbroker" if sys.argv[0].endswith("__main__.py") else "sbroker"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="sbroker: a sojourn-time matchmaking broker for trio.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="a worker pool behind brokers under a burst",
        description=DEMO_DESCRIPTION,
    )
    demo.add_argument(
        "--seconds", type=positive_number, default=2.0, help="length of the burst (s, default 2)"
    )
    demo.add_argument(
        "--load", type=positive_number, default=2.0, help="offered load / capacity (default 2)"
    )
    serve = commands.add_parser(
        "serve",
        help="serve named brokers and regulators over a socket",
        description="Serve the brokers and regulators of a TOML file (or one broker named "
        "'default') over MessagePack-RPC, until SIGTERM or SIGINT; SIGHUP reloads the file.",
    )
    service_cli.add_arguments(serve)
    console_parser = commands.add_parser(
        "console",
        help="an await-capable REPL on a service",
        description="A Python REPL connected to a service, where await works at the top level, "
        "with conn, brokers, regulators, the policy classes and stats() bound.",
    )
    console.add_arguments(console_parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        raise SystemExit(service_cli.run(args))
    if args.command == "console":
        raise SystemExit(console.run(args))
    _demo.main(seconds=args.seconds, load=args.load)


if __name__ == "__main__":
    main()
