"""The broker service: named brokers and regulators served over MessagePack-RPC."""
