"""The plan's decisions into the dispatch ledger, the size of its batches, and the rows
still waiting for synthesis into batch manifests."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from synthesis.manifest import BatchItem, item_line, item_seed
from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import among
from voice_notify.plan.eligibility import Decision, segments_of
from voice_notify.reasons import Reason

#: Below this many items a batch is not split further to fill the synthesis slots: a
#: synthesis task (a GPU pod) costs its start-up whatever it renders.
MIN_SPREAD_BATCH = 10


class BatchSizeError(ValueError):
    """The settings leave no batch size that fits the campaign into the mapped tasks."""


def choose_batch_size(
    planned: int,
    requested: int,
    gpu_slots: int,
    max_map_length: int,
    *,
    existing_batches: int = 0,
    max_batch_size: int = 2000,
) -> int:
    """How many items go into each new batch, so the number of batches stays bounded.

    ``requested`` (the DAG's ``batch_size``) is what a normal campaign gets. A small one
    gets smaller batches, down to ``MIN_SPREAD_BATCH``, so every one of the
    ``gpu_slots`` synthesis slots has a batch. A large one gets larger batches, so that,
    with the ``existing_batches`` an earlier run of the date made, the date never maps
    more than half of Airflow's ``[core] max_map_length`` tasks (the other half is room
    for notices a later run of the date adds). The size never decreases as ``planned``
    grows.

    :param planned: items waiting for a batch
    :param max_map_length: Airflow's ``[core] max_map_length``
    :param max_batch_size: the largest batch (``VOICE_NOTIFY_MAX_BATCH_SIZE``)
    :raises BatchSizeError: when no batch of at most ``max_batch_size`` items fits
    """
    if requested < 1 or gpu_slots < 1 or max_batch_size < 1:
        raise ValueError("batch_size, the synthesis slots and the largest batch must be >= 1")
    if planned <= 0:
        return min(requested, MIN_SPREAD_BATCH, max_batch_size)  # nothing to batch
    room = max_map_length - existing_batches
    if room < 1:
        raise BatchSizeError(
            f"{existing_batches} batches of this date already fill Airflow's [core] "
            f"max_map_length ({max_map_length}); raise it to plan {planned} more notices"
        )
    budget = max(1, min(room, max_map_length // 2))
    size = min(requested, max(MIN_SPREAD_BATCH, math.ceil(planned / gpu_slots)))
    size = max(size, math.ceil(planned / budget))
    if size > max_batch_size:
        if math.ceil(planned / max_batch_size) <= room:
            # Over the half kept as room, under the hard limit: still runs.
            return max_batch_size
        raise BatchSizeError(
            f"{planned} notices need batches of {math.ceil(planned / room)} to stay within "
            f"Airflow's [core] max_map_length ({max_map_length}, {existing_batches} used), "
            f"over VOICE_NOTIFY_MAX_BATCH_SIZE ({max_batch_size}); raise either"
        )
    return size


def record_decisions(
    conn: sa.Connection,
    decisions: Sequence[Decision],
    campaign_date: dt.date,
    *,
    claimed_elsewhere: set[int] | None = None,
) -> list[sa.Row]:
    """Write decisions to the ledger and return the rows that still await synthesis,
    in notice order: set-based, a few statements however many decisions.

    A row planned by an earlier run whose notice is now ineligible (opted out
    since) is moved to skipped; a notice another date already claimed is skipped.
    Rows in later states are left as they are.

    :param claimed_elsewhere: the notices another date claimed, when already looked up
    """
    if claimed_elsewhere is None:
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
    waiting, skips = [], defaultdict(list)
    for row in _planned_rows(conn, campaign_date, list(by_notice)):
        reason = (
            Reason.ALREADY_CONTACTED
            if row.notice_id in claimed_elsewhere
            else by_notice[row.notice_id].reason_code
        )
        if reason is None:
            waiting.append(row)
        else:
            skips[reason].append(row.id)
    for reason, ids in skips.items():
        ledger.skip_planned(conn, ids, reason)
    return waiting


def _planned_rows(
    conn: sa.Connection, campaign_date: dt.date, notice_ids: Sequence[int]
) -> list[sa.Row]:
    """The date's rows in ``planned`` among these notices, in notice order."""
    table = schema.dispatch_ledger
    rows: list[sa.Row] = []
    for start in range(0, len(notice_ids), _IN_CHUNK):
        rows.extend(
            conn.execute(
                sa.select(*(table.c[name] for name in _WAITING_COLUMNS)).where(
                    table.c.campaign_date == campaign_date,
                    table.c.state == ledger.LedgerState.PLANNED.value,
                    among(conn, table.c.notice_id, notice_ids[start : start + _IN_CHUNK]),
                )
            )
        )
    return sorted(rows, key=lambda r: r.notice_id)


# What a waiting row carries: its manifest item and voice choice need no more.
_WAITING_COLUMNS = (
    "id",
    "notice_id",
    "customer_id",
    "notice_type",
    "locale",
    "state",
    "batch_key",
    "call_with",
    "confirm_key",
)
# Ids per IN list: well under every driver's limit on bound parameters.
_IN_CHUNK = 5000


def batch_items(
    rows: Sequence[sa.Row], decisions: Mapping[int, Decision], campaign_date: dt.date
) -> list[BatchItem]:
    """Manifest items for ledger rows awaiting synthesis, in notice order."""
    date_text = campaign_date.isoformat()
    return [
        _item(row, decisions[row.notice_id], date_text)
        for row in sorted(rows, key=lambda r: r.notice_id)
    ]


def _item(row: sa.Row, decision: Decision, date_text: str) -> BatchItem:
    return BatchItem(
        ledger_id=row.id,
        notice_id=row.notice_id,
        campaign_date=date_text,
        notice_type=row.notice_type,
        locale=row.locale,
        segments=list(segments_of(decision)),
        voice=decision.voice,
        seed=item_seed(row.notice_id, date_text),
    )


def item_tail(decision: Decision, campaign_date: dt.date) -> str | None:
    """A planned decision's manifest line JSON (``Decision.item_tail``), as
    :func:`item_lines` would make it for a ledger row of the same type and locale
    (None: not planned)."""
    if not decision.planned:
        return None
    date_text = campaign_date.isoformat()
    item = BatchItem(
        ledger_id=0,
        notice_id=decision.notice_id,
        campaign_date=date_text,
        notice_type=decision.notice_type,
        locale=decision.locale,
        segments=list(decision.segments),
        voice=decision.voice,
        seed=item_seed(decision.notice_id, date_text),
    )
    return item.json_tail()


def item_lines(
    rows: Sequence[sa.Row], decisions: Mapping[int, Decision], campaign_date: dt.date
) -> list[tuple[int, int, str]]:
    """``(ledger id, notice id, JSON line)`` of the manifest items of ledger rows awaiting
    synthesis, in notice order: :func:`batch_items`' lines, with each decision's
    ``item_tail`` where it was made for the row's type and locale."""
    date_text = campaign_date.isoformat()
    lines = []
    for row in sorted(rows, key=lambda r: r.notice_id):
        decision = decisions[row.notice_id]
        tail = decision.item_tail
        if tail is None or (row.notice_type, row.locale) != (
            decision.notice_type,
            decision.locale,
        ):
            tail = _item(row, decision, date_text).json_tail()
        lines.append((row.id, row.notice_id, item_line(row.id, tail)))
    return lines


def chunk(items: Sequence[BatchItem], batch_size: int) -> list[list[BatchItem]]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
