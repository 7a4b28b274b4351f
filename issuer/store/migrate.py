"""Schema migrations: ``issuer/sql/<dialect>/NNNN_name.sql``, applied in order, once.

Each applied file is recorded with its SHA-256; a recorded migration whose file
has changed since is refused, because the database no longer matches what the
file says. Concurrent migrators are serialized: PostgreSQL by an advisory lock,
SQLite by its write lock (``BEGIN IMMEDIATE``), so two processes starting at
once apply each migration exactly once.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from issuer.errors import MigrationError

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
# Any constant works; it only has to be the same in every process of this service.
PG_MIGRATION_LOCK = 0x15_5E_ED_01


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(dialect: str) -> list[Migration]:
    folder = resources.files("issuer") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two {dialect} migrations share a version number")
    return found


def pending(available: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The migrations still to apply; refuses if an applied one was edited."""
    for mig in available:
        recorded = applied.get(mig.version)
        if recorded is not None and recorded != mig.checksum:
            raise MigrationError(
                f"migration {mig.version:04d}_{mig.name}.sql was changed after it was applied "
                "(checksum mismatch); add a new migration instead of editing an applied one"
            )
    return [mig for mig in available if mig.version not in applied]


def sqlite_statements(script: str) -> list[str]:
    """Split a script into statements the way the sqlite3 shell does."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        raise MigrationError("migration ends with an incomplete statement")
    return statements


SCHEMA_TABLE_POSTGRES = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SCHEMA_TABLE_SQLITE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""
