"""Small CRM and ledger set-ups shared by the dialing tests (not a fixture file)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import migrate
from voice_notify.ledger import LedgerState
from voice_notify_dev import demo_crm


def seed_customers(engine: sa.Engine, phones: Mapping[int, str], due: dt.date) -> None:
    """Schema, one customer per phone and one pension notice each (same ids)."""
    demo_crm.create_schema(engine)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            demo_crm.customers.insert(),
            [
                {"id": i, "name": f"曾{i}", "phone": phone, "voice_opt_out": False}
                for i, phone in phones.items()
            ],
        )
        conn.execute(
            demo_crm.notices.insert(),
            [
                {
                    "id": i,
                    "customer_id": i,
                    "notice_type": "pension_arrival",
                    "variables": json.dumps({"amount": "100"}),
                    "due_date": due,
                }
                for i in phones
            ],
        )


def synthesized_rows(
    engine: sa.Engine, notice_ids: Iterable[int], day: dt.date, audio_key: str
) -> list[sa.Row]:
    """Ledger rows for the notices, planned and synthesized with ``audio_key``."""
    with engine.begin() as conn:
        ledger.record_plan(
            conn,
            [
                {
                    "notice_id": i,
                    "customer_id": i,
                    "campaign_date": day,
                    "state": LedgerState.PLANNED,
                    "notice_type": "pension_arrival",
                }
                for i in notice_ids
            ],
        )
        for row in ledger.rows_for_date(conn, day, [LedgerState.PLANNED]):
            ledger.transition(conn, row.id, LedgerState.SYNTHESIZED, audio_key=audio_key)
        return ledger.rows_for_date(conn, day)


def due_notice(notice_id: int, day: dt.date, **overrides) -> dict:
    """One extracted due notice as the plan reads it: a valid repayment reminder due on
    ``day`` for customer ``100 + notice_id``; ``overrides`` replace fields."""
    notice = {
        "notice_id": notice_id,
        "customer_id": 100 + notice_id,
        "notice_type": "repayment_reminder",
        "variables": json.dumps(
            {"amount": "3280.50", "due_date": day.isoformat(), "card_tail": "0427"}
        ),
        "due_date": day.isoformat(),
        "customer_name": "曾小明",
        "phone": "138 1234 5678",
        "preferred_dialect": "mandarin",
        "time_zone": "Asia/Shanghai",
        "voice_opt_out": False,
    }
    notice.update(overrides)
    return notice
