"""``sbroker serve``: run the broker service from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys

import trio

from sbroker._arguments import tcp_address
from sbroker.service.access import Tokens, protected_mode_error, resolve_tokens
from sbroker.service.config import ConfigError, ServiceConfig, default_config, load_config
from sbroker.service.listen import (
    Address,
    bound_address,
    open_listeners,
    parse_address,
    server_ssl_context,
)
from sbroker.service.processes import child_addresses, child_command, supervise
from sbroker.service.server import Service

__all__ = ["add_arguments", "run"]

logger = logging.getLogger("sbroker.service")

EXIT_INVALID = 2  # an invalid configuration or command line (section 7, A2)
EXIT_CANNOT_LISTEN = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's options."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (default: one broker 'default' on 127.0.0.1:7421)",
    )
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        action="append",
        help="HOST:PORT or unix:PATH to listen on; repeat for several; replaces [server] listen",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the access token from PATH (before SBROKER_TOKEN and [server] token)",
    )
    parser.add_argument(
        "--processes",
        metavar="N",
        type=int,
        default=1,
        help="run N server processes, on consecutive ports (Unix sockets: PATH, PATH.1, ...)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=tcp_address,
        help="serve Prometheus metrics of every broker and regulator at http://HOST:PORT/metrics "
        "(needs sbroker[metrics]; with --processes N, on N consecutive ports)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without a token (turns protected mode off)",
    )


def _fail(message: str, status: int) -> int:
    print(f"sbroker serve: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` until SIGTERM/SIGINT; the exit status (0 after a clean shutdown)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    try:
        config = default_config() if args.config is None else load_config(args.config)
        addresses = (
            config.server.listen
            if not args.listen
            else tuple(parse_address(text) for text in args.listen)
        )
        tokens = resolve_tokens(
            token_file=args.token_file,
            environ=os.environ,
            config_token=config.server.token,
            config_admin_token=config.server.admin_token,
        )
        ssl_context = _ssl_context(config)  # unreadable TLS files: an invalid config (A4)
    except (ConfigError, ValueError, OSError) as exc:
        return _fail(str(exc), EXIT_INVALID)
    refusal = protected_mode_error(addresses, tokens, args.insecure)
    if refusal is not None:
        return _fail(refusal, EXIT_INVALID)
    if args.metrics is not None:
        try:
            import sbroker.metrics  # noqa: F401  (the optional dependency, checked up front)
        except ImportError as exc:
            return _fail(str(exc), EXIT_INVALID)
    if args.processes == 1:
        return trio.run(_serve, config, addresses, tokens, ssl_context, args.metrics)
    try:
        if args.processes < 1:
            raise ValueError(f"--processes must be at least 1, got {args.processes}")
        commands = [
            child_command(
                args.config,
                child_addresses(addresses, index),
                token_file=args.token_file,
                insecure=args.insecure,
                metrics=None
                if args.metrics is None
                else (args.metrics[0], args.metrics[1] + index if args.metrics[1] else 0),
            )
            for index in range(args.processes)
        ]
        trio.run(_check_hosts, config)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc), EXIT_INVALID)
    return trio.run(supervise, commands)


async def _check_hosts(config: ServiceConfig) -> None:
    """Build the hosts once, so that an invalid table stops the parent, not N children."""
    Service(config)


def _ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """The TLS context of ``[server] tls_cert``/``tls_key``, if set (A4)."""
    server = config.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    return server_ssl_context(server.tls_cert, server.tls_key)


async def _serve(
    config: ServiceConfig,
    addresses: tuple[Address, ...],
    tokens: Tokens,
    ssl_context: ssl.SSLContext | None,
    metrics: tuple[str, int] | None = None,
) -> int:
    try:
        service = Service(config, tokens=tokens)  # hosts are built inside trio's clock
    except ConfigError as exc:
        return _fail(str(exc), EXIT_INVALID)
    try:
        listeners = await open_listeners(
            addresses, unix_mode=config.server.unix_mode, ssl_context=ssl_context
        )
    except OSError as exc:
        return _fail(str(exc), EXIT_CANNOT_LISTEN)
    logger.info(
        "serving %s on %s",
        ", ".join(host.name for host in config.hosts),
        ", ".join(str(bound_address(listener)) for listener in listeners),
    )
    async with trio.open_nursery() as nursery:
        if metrics is not None:
            await nursery.start(_serve_metrics, service, metrics)
        await service.serve(listeners, handle_signals=True)
        nursery.cancel_scope.cancel()
    logger.info("stopped")
    return 0


async def _serve_metrics(
    service: Service,
    address: tuple[str, int],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``--metrics``: every host of ``service``, as it is at each scrape, over HTTP."""
    from prometheus_client import CollectorRegistry

    import sbroker.metrics

    registry = CollectorRegistry()
    sbroker.metrics.register_table(service.hosts.by_name, registry=registry)
    host, port = address
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(sbroker.metrics.serve_metrics, host, port, registry)
        logger.info("metrics on http://%s/metrics", bound_address(listeners[0]))
        task_status.started()
