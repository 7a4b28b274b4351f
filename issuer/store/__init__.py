"""Persistence: the Store protocol and its PostgreSQL and SQLite implementations."""
