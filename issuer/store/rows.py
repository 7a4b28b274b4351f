"""Row mappers and statements both dialects share.

The dialects differ in how a timestamp comes back (PostgreSQL ``timestamptz`` is a
datetime; SQLite stores epoch seconds as a float), so each mapper takes the
dialect's conversion. SQL that is the same on both is written once here, with
``?`` placeholders; :func:`numbered` turns them into PostgreSQL's ``$n``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from issuer.store.base import (
    AuditEvent,
    ClientRecord,
    FamilyRecord,
    KeyRecord,
    RefreshTokenRecord,
    UserRecord,
)


class Row(Protocol):
    """``sqlite3.Row`` and ``asyncpg.Record`` alike."""

    def __getitem__(self, key: str, /) -> Any: ...


Stamp = Callable[[Any], datetime]


def epoch(when: datetime | None) -> float | None:
    """SQLite: a datetime as epoch seconds."""
    return None if when is None else when.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def as_is(value: datetime) -> datetime:
    return value


def _opt(stamp: Stamp, value: Any) -> datetime | None:
    return None if value is None else stamp(value)


def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, …`` (PostgreSQL)."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


KEY_COLUMNS = "kid, alg, public_jwk, private_wrapped, kek_id, created_at, activates_at, revoked_at"

FIND_REFRESH = """
SELECT t.*, f.user_id, f.client_id, f.created_at AS f_created_at,
       f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at
FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
WHERE t.token_hash = ?
"""

# The same, with the family's user: what a refresh needs before it signs.
FIND_REFRESH_GRANT = """
SELECT t.*, f.user_id, f.client_id, f.created_at AS f_created_at,
       f.expires_at AS f_expires_at, f.revoked_at AS f_revoked_at,
       u.username, u.username_key, u.password_hash, u.roles, u.disabled,
       u.created_at, u.updated_at
FROM refresh_tokens t JOIN refresh_families f ON f.family_id = t.family_id
JOIN users u ON u.user_id = f.user_id
WHERE t.token_hash = ?
"""

LIST_REVOCATIONS = (
    "SELECT seq, kind, subject, at FROM revocation_events"
    " WHERE seq > ? AND drop_after > ? ORDER BY seq LIMIT ?"
)
TOP_REVOCATION = "SELECT max(seq) AS top FROM revocation_events"

# Failed-login counters (services/throttle.py). A key's older windows go as a new one
# starts, so the table stays small between purges.
LOGIN_FAILURES = "SELECT count FROM login_failures WHERE kind = ? AND key = ? AND window_start = ?"
DROP_OLD_LOGIN_FAILURES = (
    "DELETE FROM login_failures WHERE kind = ? AND key = ? AND window_start < ?"
)
ADD_LOGIN_FAILURE = (
    "INSERT INTO login_failures (kind, key, window_start, count) VALUES (?, ?, ?, 1)"
    " ON CONFLICT (kind, key, window_start) DO UPDATE SET count = login_failures.count + 1"
    " RETURNING count"
)
CLEAR_LOGIN_FAILURES = "DELETE FROM login_failures WHERE kind = ? AND key = ?"


def purge_statements(now: Any, old: Any) -> list[tuple[str, Any]]:
    """What :meth:`Store.purge_expired` deletes, in an order the foreign keys accept."""
    return [
        ("DELETE FROM revocation_events WHERE drop_after <= ?", now),
        ("DELETE FROM family_access_tokens WHERE exp < ?", old),
        (
            "DELETE FROM family_access_tokens WHERE family_id IN"
            " (SELECT family_id FROM refresh_families WHERE expires_at <= ?)",
            now,
        ),
        (
            "DELETE FROM refresh_tokens WHERE family_id IN"
            " (SELECT family_id FROM refresh_families WHERE expires_at <= ?)",
            now,
        ),
        ("DELETE FROM refresh_families WHERE expires_at <= ?", now),
        ("DELETE FROM login_failures WHERE window_start < ?", old),
    ]


def key(row: Row, stamp: Stamp) -> KeyRecord:
    return KeyRecord(
        kid=row["kid"],
        alg=row["alg"],
        public_jwk=json.loads(row["public_jwk"]),
        private_wrapped=row["private_wrapped"],
        kek_id=row["kek_id"],
        created_at=stamp(row["created_at"]),
        activates_at=stamp(row["activates_at"]),
        revoked_at=_opt(stamp, row["revoked_at"]),
    )


def client(row: Row, stamp: Stamp) -> ClientRecord:
    return ClientRecord(
        client_id=row["client_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        scopes=tuple(row["scopes"].split()),
        first_party=bool(row["first_party"]),
        created_at=stamp(row["created_at"]),
        disabled=bool(row["disabled"]),
        redirect_uris=tuple(row["redirect_uris"].split()),
        post_logout_redirect_uris=tuple(row["post_logout_redirect_uris"].split()),
        web_origins=tuple(row["web_origins"].split()),
    )


def audit(row: Row, stamp: Stamp) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        at=stamp(row["at"]),
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        detail=json.loads(row["detail"]),
    )


def user(row: Row, stamp: Stamp) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        username=row["username"],
        username_key=row["username_key"],
        password_hash=row["password_hash"],
        roles=tuple(row["roles"].split()),
        disabled=bool(row["disabled"]),
        created_at=stamp(row["created_at"]),
        updated_at=stamp(row["updated_at"]),
    )


def token(row: Row, stamp: Stamp) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        token_hash=row["token_hash"],
        family_id=row["family_id"],
        generation=row["generation"],
        parent_hash=row["parent_hash"],
        scope=tuple(row["scope"].split()),
        issued_at=stamp(row["issued_at"]),
        idle_expires_at=stamp(row["idle_expires_at"]),
        spent_at=_opt(stamp, row["spent_at"]),
    )


def family(row: Row, stamp: Stamp) -> FamilyRecord:
    """From a :data:`FIND_REFRESH` row."""
    return FamilyRecord(
        family_id=row["family_id"],
        user_id=row["user_id"],
        client_id=row["client_id"],
        created_at=stamp(row["f_created_at"]),
        expires_at=stamp(row["f_expires_at"]),
        revoked_at=_opt(stamp, row["f_revoked_at"]),
    )


def refresh_grant(row: Row, stamp: Stamp) -> tuple[RefreshTokenRecord, FamilyRecord, UserRecord]:
    """From a :data:`FIND_REFRESH_GRANT` row: the token, its family and their user."""
    return token(row, stamp), family(row, stamp), user(row, stamp)
