"""The broker service's Python client: remote brokers and regulators as coroutines.

::

    async with sbroker.client.connect("127.0.0.1:7421") as conn:
        broker = conn.broker("default")
        match await broker.ask("job"):
            case sbroker.Go(value=worker): ...
            case sbroker.Drop(): ...

Every call of :class:`sbroker.Broker` and :class:`sbroker.regulator.Regulator`
has a twin of the same name, parameters and result types, as a coroutine.
"""

from sbroker.client._backoff import Backoff
from sbroker.client._connection import Connection, connect
from sbroker.client._errors import ConnectionFailed, InvalidConfig, RemoteError, Unauthorized
from sbroker.client._pending import RemotePending
from sbroker.client._remote import RemoteBroker, RemoteRegulator
from sbroker.client._session import Monitor

__all__ = [
    "Backoff",
    "Connection",
    "ConnectionFailed",
    "InvalidConfig",
    "Monitor",
    "RemoteBroker",
    "RemoteError",
    "RemotePending",
    "RemoteRegulator",
    "Unauthorized",
    "connect",
]
