"""sbroker: a sojourn-time matchmaking broker for trio."""
