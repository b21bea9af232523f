"""Command line: ``python -m sbroker demo``."""

from __future__ import annotations

import argparse

from sbroker import _demo
from sbroker.service import cli as service_cli
from sbroker.service import console


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m sbroker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a worker pool behind brokers under a burst")
    demo.add_argument("--seconds", type=float, default=2.0, help="length of the burst (s)")
    demo.add_argument("--load", type=float, default=2.0, help="offered load / capacity")
    serve = commands.add_parser("serve", help="serve named brokers and regulators over a socket")
    service_cli.add_arguments(serve)
    console_parser = commands.add_parser("console", help="an await-capable REPL on a service")
    console.add_arguments(console_parser)
    args = parser.parse_args(argv)
    if args.command == "console":
        raise SystemExit(console.run(args))
    if args.command == "serve":
        raise SystemExit(service_cli.run(args))
    if args.seconds <= 0 or args.load <= 0:
        parser.error("--seconds and --load must be positive")
    _demo.main(seconds=args.seconds, load=args.load)


if __name__ == "__main__":
    main()
