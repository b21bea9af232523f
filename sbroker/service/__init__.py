"""The broker service: named brokers and regulators served over MessagePack-RPC.

The wire contract is ``protocol.md``; the modules, from the bytes up:

* :mod:`~sbroker.service.protocol`: one connection's framing, validation and
  in-flight table, without I/O.
* :mod:`~sbroker.service.session`: one connection's requests as calls on the
  in-process brokers and regulators (the service is an adapter).
* :mod:`~sbroker.service.server`: listeners, connections (reader, writer,
  bounded outbox), reload and shutdown.
* :mod:`~sbroker.service.hosts`: the named hosts and how a configuration is
  applied to them, prepared then committed.
* :mod:`~sbroker.service.config` and :mod:`~sbroker.service.config_maps`: the
  TOML file and the maps that stand for policies, meters and valves.
* :mod:`~sbroker.service.access` and :mod:`~sbroker.service.listen`: tokens,
  protected mode, addresses, Unix sockets and TLS.
* :mod:`~sbroker.service.cli` and :mod:`~sbroker.service.processes`:
  ``sbroker serve`` (``--processes N``); :mod:`~sbroker.service.console`:
  ``sbroker console``.
"""
