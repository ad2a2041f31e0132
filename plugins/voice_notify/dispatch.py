"""The dial step: record a batch's synthesis results, re-check, and place calls.

Exactly-once rests on three rules:
1. a notice is dialled only by the ledger row that holds its dial claim;
2. the row enters ``dialing`` with its idempotency key in a committed
   transaction before the gateway hears of the call;
3. a row found in ``dialing`` (an earlier attempt died or timed out) is looked
   up at the gateway by that key before anything is sent again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from synthesis.manifest import ResultItem
from voice_notify import ledger, reasons
from voice_notify.campaigns import CallingHours
from voice_notify.db import load_sql
from voice_notify.gateway.base import (
    CallRequest,
    CallStatus,
    GatewayPermanentError,
    GatewayTransientError,
    VoiceGateway,
)
from voice_notify.ledger import LedgerState
from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164

log = logging.getLogger(__name__)


def idempotency_key(notice_id: int, campaign_date: dt.date, attempt: int) -> str:
    """The gateway idempotency key of one call attempt."""
    return f"vn-{notice_id}-{campaign_date.isoformat()}-{attempt}"


@dataclass
class DialCounts:
    synthesized: int = 0
    synthesis_failed: int = 0
    dialed: int = 0
    skipped: int = 0
    waiting: int = 0  # outside calling hours: left for the next window
    rejected: int = 0
    transient: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def record_synthesis(
    conn: sa.Connection, rows: Sequence[sa.Row], results: Mapping[int, ResultItem]
) -> DialCounts:
    """Move a batch's planned rows to synthesized or failed from the worker's results."""
    counts = DialCounts()
    for row in rows:
        if row.state != LedgerState.PLANNED:
            continue
        result = results.get(row.id)
        if result is None:
            reason = reasons.SYNTHESIS_RESULT_MISSING
        elif result.status == "ok":
            ledger.transition(
                conn,
                row.id,
                LedgerState.SYNTHESIZED,
                audio_key=result.audio_key,
                engine=result.engine,
                seed=result.seed,
            )
            counts.synthesized += 1
            continue
        else:
            reason = reasons.SYNTHESIS_PREFIX + (result.error_code or "unknown")
        ledger.transition(conn, row.id, LedgerState.FAILED, reason_code=reason[:64])
        counts.synthesis_failed += 1
        log.info("notice %s: failed reason=%s", row.notice_id, reason)
    return counts


class RateLimiter:
    """At most ``per_second`` calls per second to one gateway."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._next = 0.0

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            time.sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass(frozen=True)
class DialContext:
    campaign_date: dt.date
    gateway: VoiceGateway
    audio_url: Callable[[str], str]
    calling_hours: CallingHours
    now: Callable[[], dt.datetime]  # aware UTC clock; calling hours are real time
    rate_limiter: RateLimiter
    ring_timeout_s: int = 30


def _local_time(now_utc: dt.datetime, time_zone: str | None) -> dt.time:
    try:
        zone = zoneinfo.ZoneInfo(time_zone or "Asia/Shanghai")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    return now_utc.astimezone(zone).time()


def _contacts(conn: sa.Connection, notice_ids: Sequence[int]) -> dict[int, Any]:
    if not notice_ids:
        return {}
    stmt = load_sql("select_dial_contacts", conn.dialect.name).bindparams(
        sa.bindparam("notice_ids", expanding=True)
    )
    return {row.notice_id: row for row in conn.execute(stmt, {"notice_ids": list(notice_ids)})}


def _mark_dialed(ledger_engine: sa.Engine, row_id: int, status: CallStatus, when: dt.datetime):
    with ledger_engine.begin() as conn:
        ledger.transition(
            conn,
            row_id,
            LedgerState.DIALED,
            call_id=status.call_id,
            dialed_at=when.replace(tzinfo=None),
        )


def dial_rows(
    ledger_engine: sa.Engine, crm_engine: sa.Engine, rows: Sequence[sa.Row], ctx: DialContext
) -> DialCounts:
    """Dial every synthesized (or stuck ``dialing``) row of one batch.

    Transient gateway failures are counted, and the row stays in ``dialing``;
    the caller raises afterwards so Airflow retries, and the retry looks the
    call up before sending anything.
    """
    counts = DialCounts()
    candidates = [r for r in rows if r.state in (LedgerState.SYNTHESIZED, LedgerState.DIALING)]
    with crm_engine.connect() as crm:
        contacts = _contacts(crm, [r.notice_id for r in candidates])
    for row in candidates:
        if row.state == LedgerState.DIALING:
            _resume_dialing(ledger_engine, row, contacts.get(row.notice_id), ctx, counts)
            continue
        _dial_one(ledger_engine, row, contacts.get(row.notice_id), ctx, counts)
    return counts


def _skip(ledger_engine: sa.Engine, row: sa.Row, reason: str, counts: DialCounts) -> None:
    with ledger_engine.begin() as conn:
        ledger.transition(conn, row.id, LedgerState.SKIPPED, reason_code=reason)
    counts.skip(reason)
    log.info("notice %s: skipped at dial reason=%s", row.notice_id, reason)


def _dial_one(
    ledger_engine: sa.Engine, row: sa.Row, contact: Any, ctx: DialContext, counts: DialCounts
) -> None:
    if contact is None or contact.status != "due":
        _skip(ledger_engine, row, reasons.NOTICE_NO_LONGER_DUE, counts)
        return
    if contact.voice_opt_out:
        _skip(ledger_engine, row, reasons.OPTED_OUT_BEFORE_DIAL, counts)
        return
    try:
        number = to_e164(contact.phone)
    except InvalidPhoneNumber:
        _skip(ledger_engine, row, reasons.INVALID_PHONE, counts)
        return
    now = ctx.now()
    if not ctx.calling_hours.allows(_local_time(now, contact.time_zone)):
        counts.waiting += 1
        log.info("notice %s: outside calling hours, waits for the next window", row.notice_id)
        return
    key = idempotency_key(row.notice_id, ctx.campaign_date, row.attempt)
    with ledger_engine.begin() as conn:
        if not ledger.claim_notice(conn, row.notice_id, row.id, ctx.campaign_date):
            ledger.transition(
                conn, row.id, LedgerState.SKIPPED, reason_code=reasons.ALREADY_CONTACTED
            )
            counts.skip(reasons.ALREADY_CONTACTED)
            return
        if not ledger.transition(
            conn,
            row.id,
            LedgerState.DIALING,
            from_states=[LedgerState.SYNTHESIZED],
            idempotency_key=key,
        ):
            return  # another worker moved it first; it is theirs
    _place(ledger_engine, row, number, key, ctx, counts)


def _place(
    ledger_engine: sa.Engine,
    row: sa.Row,
    number: str,
    key: str,
    ctx: DialContext,
    counts: DialCounts,
) -> None:
    request = CallRequest(
        to=number,
        idempotency_key=key,
        audio_url=ctx.audio_url(row.audio_key),
        ring_timeout_s=ctx.ring_timeout_s,
        metadata={"notice_id": str(row.notice_id), "ledger_id": str(row.id)},
    )
    ctx.rate_limiter.wait()
    try:
        status = ctx.gateway.place_call(request)
    except GatewayPermanentError as exc:
        with ledger_engine.begin() as conn:
            ledger.transition(
                conn,
                row.id,
                LedgerState.FAILED,
                reason_code=reasons.GATEWAY_REJECTED,
                outcome=str(exc)[:32],
            )
        counts.rejected += 1
        log.warning("notice %s to %s: gateway rejected: %s", row.notice_id, mask_phone(number), exc)
        return
    except GatewayTransientError as exc:
        status = _lookup_after_failure(ctx.gateway, key, exc)
        if status is None:
            counts.transient += 1
            return
    _mark_dialed(ledger_engine, row.id, status, ctx.now())
    counts.dialed += 1
    log.info("notice %s to %s: call %s placed", row.notice_id, mask_phone(number), status.call_id)


def _lookup_after_failure(gateway: VoiceGateway, key: str, exc: Exception) -> CallStatus | None:
    """After an ambiguous failure, ask the gateway whether the call exists."""
    try:
        found = gateway.find_call(key)
    except GatewayTransientError:
        found = None
    if found is None:
        log.warning("call %s: gateway failed (%s) and holds no call; left for a retry", key, exc)
    return found


def _resume_dialing(
    ledger_engine: sa.Engine, row: sa.Row, contact: Any, ctx: DialContext, counts: DialCounts
) -> None:
    """A row an earlier attempt left in ``dialing``: look up before any resend."""
    key = row.idempotency_key
    try:
        found = ctx.gateway.find_call(key)
    except GatewayTransientError as exc:
        log.warning("call %s: lookup failed (%s); left for a retry", key, exc)
        counts.transient += 1
        return
    if found is not None:
        _mark_dialed(ledger_engine, row.id, found, ctx.now())
        counts.dialed += 1
        return
    # The gateway never accepted it: sending with the same key is safe. The
    # dial-time checks apply again, since time has passed.
    reason = _abandon_reason(contact)
    if reason is not None:
        with ledger_engine.begin() as conn:
            ledger.transition(conn, row.id, LedgerState.FAILED, reason_code=reason)
        counts.skip(reason)
        return
    _place(ledger_engine, row, to_e164(contact.phone), key, ctx, counts)


def _abandon_reason(contact: Any) -> str | None:
    """Why a call the gateway never accepted must not be sent after all, if it must not."""
    if contact is None or contact.status != "due":
        return reasons.NOTICE_NO_LONGER_DUE
    if contact.voice_opt_out:
        return reasons.OPTED_OUT_BEFORE_DIAL
    try:
        to_e164(contact.phone)
    except InvalidPhoneNumber:
        return reasons.INVALID_PHONE
    return None
