"""The plan's decisions into the dispatch ledger, and the rows still waiting for synthesis
into batch manifests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from synthesis.manifest import BatchItem, item_seed
from voice_notify import ledger
from voice_notify.plan.eligibility import Decision
from voice_notify.reasons import Reason


def record_decisions(
    conn: sa.Connection, decisions: Sequence[Decision], campaign_date: dt.date
) -> list[sa.Row]:
    """Write decisions to the ledger and return the rows that still await synthesis.

    A row planned by an earlier run whose notice is now ineligible (opted out
    since) is moved to skipped; a notice another date already claimed is skipped.
    """
    claimed_elsewhere = ledger.notices_settled_elsewhere(
        conn, [d.notice_id for d in decisions], campaign_date
    )
    ledger.record_plan(
        conn,
        (
            {
                "notice_id": d.notice_id,
                "campaign_date": campaign_date,
                "customer_id": d.customer_id,
                "notice_type": d.notice_type[:48],
                "locale": d.locale,
                "state": ledger.LedgerState.PLANNED
                if d.planned and d.notice_id not in claimed_elsewhere
                else ledger.LedgerState.SKIPPED,
                "reason_code": Reason.ALREADY_CONTACTED
                if d.planned and d.notice_id in claimed_elsewhere
                else d.reason_code,
            }
            for d in decisions
        ),
    )
    by_notice = {d.notice_id: d for d in decisions}
    waiting = []
    for row in ledger.rows_for_date(conn, campaign_date, [ledger.LedgerState.PLANNED]):
        decision = by_notice.get(row.notice_id)
        if decision is None:
            continue
        reason = (
            Reason.ALREADY_CONTACTED if row.notice_id in claimed_elsewhere else decision.reason_code
        )
        if reason is not None:
            ledger.transition(conn, row.id, ledger.LedgerState.SKIPPED, reason_code=reason)
            continue
        waiting.append(row)
    return waiting


def batch_items(
    rows: Sequence[sa.Row], decisions: Mapping[int, Decision], campaign_date: dt.date
) -> list[BatchItem]:
    """Manifest items for ledger rows awaiting synthesis, in notice order."""
    date_text = campaign_date.isoformat()
    return [
        BatchItem(
            ledger_id=row.id,
            notice_id=row.notice_id,
            campaign_date=date_text,
            notice_type=row.notice_type,
            locale=row.locale,
            segments=list(decisions[row.notice_id].segments),
            voice=decisions[row.notice_id].voice,
            seed=item_seed(row.notice_id, date_text),
        )
        for row in sorted(rows, key=lambda r: r.notice_id)
    ]


def chunk(items: Sequence[BatchItem], batch_size: int) -> list[list[BatchItem]]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
