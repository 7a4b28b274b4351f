"""The audit log, read back: every change the service made, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from issuer.store.base import AuditEvent, Store


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Like every paged list here: ``next`` is an opaque string to pass back as ``after``."""

    items: list[dict[str, Any]]
    next: str


def audit_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": event.detail,
    }


async def list_audit(store: Store, *, after: int, limit: int) -> AuditPage:
    """Events with an id above ``after``; ``next`` is the last id (``after`` when none),
    so the log can be polled like the revocation feed."""
    items = [audit_json(e) for e in await store.list_audit(after=after, limit=limit)]
    return AuditPage(items, str(items[-1]["id"] if items else after))
