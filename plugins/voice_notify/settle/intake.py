"""Status intake: verified gateway callbacks into ``call_events``, deduplicated.

Gateways repeat callbacks, deliver them late and out of order. Each event is
stored once under (call id, kind, sequence): a repeat is dropped by the unique
key, and a later status is kept even when it arrives before an earlier one;
``voice_notify.settle.outcomes.status_from_events`` reads the terminal one whenever it came.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify.db.sql import insert_ignoring_duplicates
from voice_notify.gateway.base import CallEvent


def store_events(engine: sa.Engine, events: Sequence[CallEvent], gateway: str) -> int:
    """Insert events not seen before; returns how many were new."""
    if not events:
        return 0
    received = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        {
            "call_id": e.call_id,
            "kind": e.kind,
            "sequence": e.sequence,
            "idempotency_key": e.idempotency_key,
            "key_pressed": e.key_pressed,
            "answered_by": e.answered_by,
            "duration_s": e.duration_s,
            "occurred_at": e.occurred_at.astimezone(dt.UTC).replace(tzinfo=None)
            if e.occurred_at
            else None,
            "received_at": received,
            "gateway": gateway,
        }
        for e in events
    ]
    stored = 0
    with engine.begin() as conn:
        stmt = insert_ignoring_duplicates(conn, schema.call_events, ("call_id", "kind", "sequence"))
        # One statement per event: a callback carries one or two events, and
        # only single-row execution reports reliably whether a row went in.
        for row in rows:
            stored += max(conn.execute(stmt, row).rowcount, 0)
    return stored
