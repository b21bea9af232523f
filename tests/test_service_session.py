"""A session without sockets, on trio's MockClock: races that real time cannot aim at."""

from __future__ import annotations

from typing import Any

import msgpack
import trio
import trio.testing

from sbroker.service.config import parse_config
from sbroker.service.hosts import Hosts
from sbroker.service.protocol import ServerProtocol
from sbroker.service.session import Context, Session

CONFIG = """
[regulators.pool]
queue = { policy = "timeout", timeout = inf }
valve = { valve = "rate", limit = 1, interval = 1.0 }
"""


def hosts_without_background_tasks(text: str) -> Hosts:
    """The hosts of ``text``, not running: nothing happens between the test's calls."""
    hosts = Hosts()
    hosts.commit(hosts.prepare(parse_config(text, "t.toml", base_dir=".")), lambda host: None)
    return hosts


class Peer:
    """One session fed packed requests; what it sends back, unpacked."""

    def __init__(self, hosts: Hosts) -> None:
        self.protocol = ServerProtocol()
        self.sent: list[Any] = []
        self.session = Session(Context(hosts, dict), self.protocol, self._receive)
        self.msgids = iter(range(1, 1000))

    def _receive(self, data: bytes) -> None:
        self.sent.append(msgpack.unpackb(data))

    def call(self, method: str, *params: Any) -> int:
        msgid = next(self.msgids)
        self.protocol.receive_data(msgpack.packb([0, msgid, method, list(params)]))
        while (event := self.protocol.next_event()) is not None:
            assert self.session.handle(event)
        return msgid


async def test_a_permit_granted_while_closing_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # S7: closing withdraws the session's asks one by one; withdrawing one lets the rate
    # valve open and grant the next of the same session, whose permit must go too
    hosts = hosts_without_background_tasks(CONFIG)
    pool = hosts.regulator("pool")
    peer = Peer(hosts)
    peer.call("ask", "pool")
    peer.call("ask", "pool")
    assert (pool.len(), pool.size()) == (2, 0)  # a new rate valve stays closed for 1 s
    await trio.sleep(2)  # the valve may open now, but nothing has run it yet
    peer.session.close()
    assert (pool.len(), pool.size()) == (0, 0)
    assert peer.session.permits == 0


async def test_in_process_cancel_of_a_pending_granted_by_the_catch_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # api.md Pending.cancel: False once answered, also when the answer comes from the
    # overdue valve work (R4) that the cancel itself runs first
    pool = hosts_without_background_tasks(CONFIG).regulator("pool")
    pending = pool.async_ask()
    await trio.sleep(2)
    assert pending.cancel() is False
    assert pending.result is not None and not pending.cancelled
    assert pool.size() == 1
