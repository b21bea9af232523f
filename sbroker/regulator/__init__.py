"""The regulator and its valves: how many tasks may run at once."""

__all__: list[str] = []
