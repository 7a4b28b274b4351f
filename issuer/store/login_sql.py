"""Browser-login statements (:class:`issuer.store.login_base.LoginTx`), written once for
both dialects: ``?`` placeholders become ``$n`` on PostgreSQL, and times are Unix
seconds on SQLite and ``timestamptz`` on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from issuer.store.login_base import (
    AuthorizationCodeRecord,
    BrowserSessionRecord,
    ConsentRecord,
    InteractionRecord,
)

_PLACEHOLDER = re.compile(r"\?")


class LoginStatements:
    """Mixed into each dialect's session transaction; the dialect supplies four primitives."""

    postgres: bool = False

    async def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        raise NotImplementedError

    async def _exec(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        if not self.postgres:
            return sql
        counter = iter(range(1, 1000))
        return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)

    def _t(self, when: datetime | None) -> Any:
        if when is None or self.postgres:
            return when
        return when.timestamp()

    def _dt(self, value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)

    def _dt_(self, value: Any) -> datetime | None:
        return None if value is None else self._dt(value)

    async def _row(self, sql: str, *args: Any) -> Mapping[str, Any] | None:
        rows = await self._rows(sql, *args)
        return rows[0] if rows else None

    # -- browser sessions --
    async def insert_browser_session(self, session: BrowserSessionRecord) -> None:
        await self._exec(
            "INSERT INTO browser_sessions (session_hash, user_id, auth_time, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?)",
            session.session_hash,
            session.user_id,
            self._t(session.auth_time),
            self._t(session.created_at),
            self._t(session.expires_at),
        )

    async def get_browser_session(self, session_hash: str) -> BrowserSessionRecord | None:
        row = await self._row("SELECT * FROM browser_sessions WHERE session_hash = ?", session_hash)
        if row is None:
            return None
        return BrowserSessionRecord(
            session_hash=row["session_hash"],
            user_id=row["user_id"],
            auth_time=self._dt(row["auth_time"]),
            created_at=self._dt(row["created_at"]),
            expires_at=self._dt(row["expires_at"]),
            ended_at=self._dt_(row["ended_at"]),
        )

    async def end_browser_session(self, session_hash: str, at: datetime) -> list[str]:
        await self._exec(
            "UPDATE browser_sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL",
            self._t(at),
            session_hash,
        )
        rows = await self._rows(
            "SELECT family_id FROM browser_session_families WHERE session_hash = ?"
            " ORDER BY family_id",
            session_hash,
        )
        return [str(r["family_id"]) for r in rows]

    async def link_session_family(self, family_id: str, session_hash: str) -> None:
        await self._exec(
            "INSERT INTO browser_session_families (family_id, session_hash) VALUES (?, ?)",
            family_id,
            session_hash,
        )

    async def move_session_families(self, from_hash: str, to_hash: str) -> None:
        await self._exec(
            "UPDATE browser_session_families SET session_hash = ? WHERE session_hash = ?",
            to_hash,
            from_hash,
        )

    # -- interactions --
    async def insert_interaction(self, interaction: InteractionRecord) -> None:
        await self._exec(
            "INSERT INTO interactions (interaction_id, browser_hash, client_id, request,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            interaction.interaction_id,
            interaction.browser_hash,
            interaction.client_id,
            json.dumps(interaction.request),
            self._t(interaction.created_at),
            self._t(interaction.expires_at),
        )

    async def get_interaction(self, interaction_id: str) -> InteractionRecord | None:
        row = await self._row("SELECT * FROM interactions WHERE interaction_id = ?", interaction_id)
        if row is None:
            return None
        return InteractionRecord(
            interaction_id=row["interaction_id"],
            browser_hash=row["browser_hash"],
            client_id=row["client_id"],
            request=json.loads(row["request"]),
            created_at=self._dt(row["created_at"]),
            expires_at=self._dt(row["expires_at"]),
            user_id=row["user_id"],
            session_hash=row["session_hash"],
            auth_time=self._dt_(row["auth_time"]),
        )

    async def set_interaction_login(
        self, interaction_id: str, user_id: str, session_hash: str, auth_time: datetime
    ) -> None:
        await self._exec(
            "UPDATE interactions SET user_id = ?, session_hash = ?, auth_time = ?"
            " WHERE interaction_id = ?",
            user_id,
            session_hash,
            self._t(auth_time),
            interaction_id,
        )

    async def delete_interaction(self, interaction_id: str) -> bool:
        rows = await self._rows(
            "DELETE FROM interactions WHERE interaction_id = ? RETURNING interaction_id",
            interaction_id,
        )
        return bool(rows)

    # -- codes --
    def _code(self, row: Mapping[str, Any]) -> AuthorizationCodeRecord:
        return AuthorizationCodeRecord(
            code_hash=row["code_hash"],
            client_id=row["client_id"],
            user_id=row["user_id"],
            redirect_uri=row["redirect_uri"],
            scope=tuple(row["scope"].split()),
            code_challenge=row["code_challenge"],
            nonce=row["nonce"],
            auth_time=self._dt(row["auth_time"]),
            session_hash=row["session_hash"],
            issued_at=self._dt(row["issued_at"]),
            expires_at=self._dt(row["expires_at"]),
            used_at=self._dt_(row["used_at"]),
            family_id=row["family_id"],
        )

    async def insert_code(self, code: AuthorizationCodeRecord) -> None:
        await self._exec(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, scope,"
            " code_challenge, nonce, auth_time, session_hash, issued_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            code.code_hash,
            code.client_id,
            code.user_id,
            code.redirect_uri,
            " ".join(code.scope),
            code.code_challenge,
            code.nonce,
            self._t(code.auth_time),
            code.session_hash,
            self._t(code.issued_at),
            self._t(code.expires_at),
        )

    async def lock_code(self, code_hash: str) -> AuthorizationCodeRecord | None:
        # SQLite: the transaction holds the write lock already.
        lock = " FOR UPDATE" if self.postgres else ""
        row = await self._row(
            "SELECT * FROM authorization_codes WHERE code_hash = ?" + lock,  # noqa: S608
            code_hash,
        )
        return None if row is None else self._code(row)

    async def spend_code(self, code_hash: str, at: datetime) -> bool:
        rows = await self._rows(
            "UPDATE authorization_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL"
            " RETURNING code_hash",
            self._t(at),
            code_hash,
        )
        return bool(rows)

    async def set_code_family(self, code_hash: str, family_id: str) -> None:
        await self._exec(
            "UPDATE authorization_codes SET family_id = ? WHERE code_hash = ?", family_id, code_hash
        )

    # -- consents --
    def _consent(self, row: Mapping[str, Any]) -> ConsentRecord:
        return ConsentRecord(
            user_id=row["user_id"],
            client_id=row["client_id"],
            scope=tuple(row["scope"].split()),
            granted_at=self._dt(row["granted_at"]),
        )

    async def save_consent(self, consent: ConsentRecord) -> None:
        await self._exec(
            "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, client_id) DO UPDATE"
            " SET scope = excluded.scope, granted_at = excluded.granted_at",
            consent.user_id,
            consent.client_id,
            " ".join(consent.scope),
            self._t(consent.granted_at),
        )

    async def get_consent(self, user_id: str, client_id: str) -> ConsentRecord | None:
        row = await self._row(
            "SELECT * FROM consents WHERE user_id = ? AND client_id = ?", user_id, client_id
        )
        return None if row is None else self._consent(row)

    async def list_consents(self, user_id: str) -> list[ConsentRecord]:
        rows = await self._rows(
            "SELECT * FROM consents WHERE user_id = ? ORDER BY client_id", user_id
        )
        return [self._consent(r) for r in rows]

    async def delete_consent(self, user_id: str, client_id: str) -> bool:
        rows = await self._rows(
            "DELETE FROM consents WHERE user_id = ? AND client_id = ? RETURNING client_id",
            user_id,
            client_id,
        )
        return bool(rows)

    async def live_families(self, user_id: str, client_id: str) -> list[str]:
        rows = await self._rows(
            "SELECT family_id FROM refresh_families WHERE user_id = ? AND client_id = ?"
            " AND revoked_at IS NULL ORDER BY family_id",
            user_id,
            client_id,
        )
        return [str(r["family_id"]) for r in rows]

    async def origin_registered(self, origin: str) -> bool:
        # Space-separated lists: pad both sides so only a whole entry matches.
        row = await self._row(
            "SELECT 1 AS found FROM clients WHERE disabled = ? AND"
            " (' ' || web_origins || ' ') LIKE ? ESCAPE '\\' LIMIT 1",
            False if self.postgres else 0,
            "% " + origin.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + " %",
        )
        return row is not None

    async def purge_login(self, now: datetime, keep: timedelta) -> int:
        """Delete interactions past their deadline, codes ``keep`` past theirs (a late
        replay still finds its code and revokes what it issued until then), and browser
        sessions that are over, with their links to refresh families."""
        old = self._t(now - keep)
        deleted = 0
        for sql, args in (
            ("DELETE FROM interactions WHERE expires_at <= ? RETURNING 1", (self._t(now),)),
            ("DELETE FROM authorization_codes WHERE expires_at < ? RETURNING 1", (old,)),
            (
                "DELETE FROM browser_session_families WHERE session_hash IN (SELECT session_hash"
                " FROM browser_sessions WHERE expires_at <= ? OR ended_at < ?) RETURNING 1",
                (self._t(now), old),
            ),
            (
                "DELETE FROM browser_sessions WHERE expires_at <= ? OR ended_at < ? RETURNING 1",
                (self._t(now), old),
            ),
        ):
            deleted += len(await self._rows(sql, *args))
        return deleted
