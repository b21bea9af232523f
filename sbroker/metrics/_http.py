"""A minimal HTTP endpoint for Prometheus scrapes, served by trio.

It runs in the trio thread of the hosts it exports, so every ``statistics()``
is read between two steps of the event loop, never concurrently with one (a
thread-based exporter such as ``prometheus_client.start_http_server`` would
read the hosts' state while the event loop changes it). One request per
connection: ``GET /metrics`` answers the registry's text exposition; the
request head is bounded in size and time.
"""

from __future__ import annotations

import logging

import trio
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

#: The most bytes of request head read before answering 431.
MAX_HEAD = 8192
#: Seconds a client has to send its request head.
HEAD_TIMEOUT = 10.0

logger = logging.getLogger("sbroker")


async def read_head(stream: trio.abc.ReceiveStream) -> bytes | None:
    """The request head up to the blank line, or ``None`` if too long or cut short."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(MAX_HEAD)
        if not chunk:
            return None
        head += chunk
    return head


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A complete HTTP/1.1 response that closes the connection."""
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return header.encode("ascii") + body


def answer(head: bytes | None, registry: CollectorRegistry) -> bytes:
    """The response to one request head."""
    if head is None:
        return response("431 Request Header Fields Too Large", b"request head too large\n")
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0].partition(b"?")[0]
    if path != b"/metrics":
        return response("404 Not Found", b"try /metrics\n")
    if method != b"GET":
        return response("405 Method Not Allowed", b"GET only\n")
    try:
        body = generate_latest(registry)
    except Exception:  # a host's statistics() failed: answer 500, keep serving
        logger.exception("sbroker metrics: collecting failed")
        return response("500 Internal Server Error", b"collecting failed\n")
    return response("200 OK", body, CONTENT_TYPE_LATEST)


async def handle_scrape(stream: trio.SocketStream, registry: CollectorRegistry) -> None:
    """Answer one request on ``stream``, then close it; a vanished client is ignored."""
    async with stream:
        try:
            with trio.fail_after(HEAD_TIMEOUT):
                head = await read_head(stream)
            await stream.send_all(answer(head, registry))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass


async def serve_metrics(
    host: str = "127.0.0.1",
    port: int = 9421,
    registry: CollectorRegistry | None = None,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` for ``registry`` on ``host``:``port`` until cancelled.

    Start it in the nursery that runs the hosts:
    ``listeners = await nursery.start(serve_metrics, "127.0.0.1", 9421)``;
    ``started`` reports the listeners (``port=0`` picks a free port, read it
    from ``listeners[0].socket.getsockname()``). ``registry`` defaults to
    ``prometheus_client.REGISTRY``.
    """
    collected = REGISTRY if registry is None else registry

    async def handler(stream: trio.SocketStream) -> None:
        await handle_scrape(stream, collected)

    await trio.serve_tcp(handler, port, host=host, task_status=task_status)
