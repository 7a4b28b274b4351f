"""JOSE building blocks: pure functions, no I/O, no settings, no clock."""
