"""The dial step: record a batch's synthesis results, re-check, and place calls.

Exactly-once rests on three rules:
1. a notice is dialled only by the ledger row that holds its dial claim;
2. the row enters ``dialing`` with its idempotency key, and the attempt is
   recorded in ``call_attempts``, in a committed transaction before the
   gateway hears of the call;
3. a row found in ``dialing`` (an earlier attempt died or timed out) is looked
   up at the gateway by that key before anything is sent again.
Before each call the compliance gate runs again: opt-out, do-not-call,
calling hours in the customer's zone and the per-customer caps.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import load_sql
from voice_notify.dial.ratelimit import CallPacer
from voice_notify.gateway.base import (
    CallRequest,
    CallStatus,
    GatewayPermanentError,
    GatewayTransientError,
    VoiceGateway,
)
from voice_notify.ledger import LedgerState
from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164
from voice_notify.plan import compliance, trail
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.compliance import GateResult
from voice_notify.reasons import Reason
from voice_notify.settle.outcomes import Outcome

log = logging.getLogger(__name__)

# How far back the caps look (the longest cap window is a week).
_CAP_HISTORY = dt.timedelta(days=7)


def idempotency_key(notice_id: int, campaign_date: dt.date, attempt: int) -> str:
    """The gateway idempotency key of one call attempt."""
    return f"vn-{notice_id}-{campaign_date.isoformat()}-{attempt}"


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


@dataclass
class DialCounts:
    synthesized: int = 0
    synthesis_failed: int = 0
    dialed: int = 0
    skipped: int = 0
    waiting: int = 0  # outside calling hours, over a cap, or a redial not yet due
    rejected: int = 0
    transient: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.note(reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "synthesized": self.synthesized,
            "synthesis_failed": self.synthesis_failed,
            "dialed": self.dialed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "rejected": self.rejected,
            "transient": self.transient,
            "reasons": dict(sorted(self.reasons.items())),
        }


@dataclass(frozen=True)
class DialContext:
    """What the dial step needs besides the rows.

    :param now: an aware UTC clock; calling hours and caps are real time
    :param status_callback_url: where the gateway posts events (None: reconcile polls)
    """

    gateway: VoiceGateway
    audio_url: Callable[[str], str]
    config: CampaignConfig
    now: Callable[[], dt.datetime]
    rate_limiter: CallPacer
    ring_timeout_s: int = 30
    status_callback_url: str | None = None
    # A row in ``dialing`` younger than this may still be in another worker's
    # hands (its request in flight); only older ones are looked up and resumed.
    resume_after_s: float = 60.0


def _contacts(conn: sa.Connection, notice_ids: Sequence[int]) -> dict[int, Any]:
    if not notice_ids:
        return {}
    stmt = load_sql("select_dial_contacts", conn.dialect.name).bindparams(
        sa.bindparam("notice_ids", expanding=True)
    )
    return {row.notice_id: row for row in conn.execute(stmt, {"notice_ids": list(notice_ids)})}


class _Dialer:
    """Dials one set of ledger rows (a batch, or a reconcile pass's redials)."""

    def __init__(self, ledger_engine: sa.Engine, ctx: DialContext) -> None:
        self.engine = ledger_engine
        self.ctx = ctx
        self.counts = DialCounts()
        self.history: dict[int, list[compliance.PastAttempt]] = {}
        self.blocked: set[str] = set()
        self.claimed_elsewhere: set[int] = set()
        self.trail: list[trail.GateEvaluation] = []  # every gate answer, written at the end

    def run(self, rows: Sequence[sa.Row], contacts: Mapping[int, Any]) -> DialCounts:
        now = self.ctx.now()
        numbers = {}
        for row in rows:
            contact = contacts.get(row.notice_id)
            try:
                numbers[row.notice_id] = to_e164(contact.phone) if contact else None
            except InvalidPhoneNumber:
                numbers[row.notice_id] = None
        with self.engine.connect() as conn:
            self.history = compliance.recent_attempts(
                conn, [r.customer_id for r in rows], _naive_utc(now - _CAP_HISTORY)
            )
            self.blocked = compliance.do_not_call_numbers(conn, filter(None, numbers.values()))
            self.claimed_elsewhere = ledger.notices_claimed_by_others(
                conn, {r.notice_id: r.id for r in rows}
            )
        compliance.ensure_customer_locks(self.engine, [r.customer_id for r in rows])
        for row in rows:
            contact, number = contacts.get(row.notice_id), numbers.get(row.notice_id)
            if row.state == LedgerState.DIALING:
                self._resume(row, contact, number)
            elif row.state == LedgerState.SYNTHESIZED:
                self._dial(row, contact, number)
        with self.engine.begin() as conn:
            trail.record_evaluations(conn, self.trail)
        return self.counts

    def _note(self, row: sa.Row, verdict: compliance.Verdict) -> None:
        """Keep the gate's answer for the decision trail (``notice_decisions``)."""
        self.trail.append(
            trail.dial_evaluation(
                row, verdict.kind.value, verdict.reason, _naive_utc(self.ctx.now()), verdict.until
            )
        )

    def _gate(self, row: sa.Row, contact: Any, number: str | None) -> compliance.Verdict:
        """The dial-time compliance gate for one row."""
        if row.notice_id in self.claimed_elsewhere:
            return compliance.skip(Reason.ALREADY_CONTACTED)
        if contact is None or contact.status != "due":
            return compliance.skip(Reason.NOTICE_NO_LONGER_DUE)
        if contact.voice_opt_out:
            return compliance.skip(Reason.OPTED_OUT_BEFORE_DIAL)
        if number is None:
            return compliance.skip(Reason.INVALID_PHONE)
        if number in self.blocked:
            return compliance.skip(Reason.ON_DO_NOT_CALL)
        now = self.ctx.now()
        zone = compliance.customer_zone(contact.time_zone, number)
        verdict = compliance.hours_verdict(self.ctx.config.calling_hours, now, zone)
        if not verdict.allowed:
            return verdict
        type_config = self.ctx.config.notice_types.get(row.notice_type)
        return compliance.caps_verdict(
            self.ctx.config.caps,
            type_config.caps if type_config else compliance.Caps(),
            # A resumed attempt is already in the history: it must not cap itself.
            [
                a
                for a in self.history.get(row.customer_id, [])
                if a.idempotency_key != row.idempotency_key
            ],
            row.notice_type,
            now,
        )

    def _dial(self, row: sa.Row, contact: Any, number: str | None) -> None:
        now = self.ctx.now()
        if row.next_attempt_at is not None and row.next_attempt_at > _naive_utc(now):
            self.counts.waiting += 1
            self.counts.note("redial_not_due")
            return
        verdict = self._gate(row, contact, number)
        self._note(row, verdict)
        if verdict.kind is GateResult.SKIP:
            self._end(row, LedgerState.SKIPPED, verdict.reason)
            return
        if verdict.kind is GateResult.WAIT:
            with self.engine.begin() as conn:
                ledger.update_in_state(
                    conn, row.id, LedgerState.SYNTHESIZED, next_attempt_at=verdict.until
                )
            self.counts.waiting += 1
            self.counts.note(verdict.reason)
            log.info("notice %s: waits until %s (%s)", row.notice_id, verdict.until, verdict.reason)
            return
        key = idempotency_key(row.notice_id, row.campaign_date, row.attempt)
        started = _naive_utc(now)
        with self.engine.begin() as conn:
            # Under the customer's lock, with what other dial tasks recorded meanwhile:
            # the check and the attempt it allows commit together.
            verdict = self._gate_locked(conn, row, number, now)
            if verdict.kind is not GateResult.ALLOW:
                self._hold(conn, row, verdict)
                return
            if not ledger.claim_notice(conn, row.notice_id, row.id, row.campaign_date):
                ledger.transition(
                    conn, row.id, LedgerState.SKIPPED, reason_code=Reason.ALREADY_CONTACTED
                )
                self.counts.skip(Reason.ALREADY_CONTACTED)
                return
            if not ledger.transition(
                conn,
                row.id,
                LedgerState.DIALING,
                from_states=[LedgerState.SYNTHESIZED],
                idempotency_key=key,
                dialing_started_at=started,
                call_id=None,
            ):
                return  # another worker moved it first; it is theirs
            conn.execute(
                schema.call_attempts.insert(),
                {
                    "ledger_id": row.id,
                    "notice_id": row.notice_id,
                    "customer_id": row.customer_id,
                    "campaign_date": row.campaign_date,
                    "attempt": row.attempt,
                    "idempotency_key": key,
                    "gateway": self.ctx.gateway.name,
                    "audio_key": row.audio_key,
                    "dialing_started_at": started,
                },
            )
        self.history.setdefault(row.customer_id, []).append(
            compliance.PastAttempt(started, row.notice_type, key)
        )
        self._place(row, number, key)

    def _gate_locked(
        self, conn: sa.Connection, row: sa.Row, number: str, now: dt.datetime
    ) -> compliance.Verdict:
        """Do-not-call, an opt-out key pressed in another call, and the caps, read fresh
        under the customer's lock (held until the caller's transaction ends)."""
        if row.customer_id is None:
            return compliance.ALLOW  # no customer to cap (the CRM row has no id)
        compliance.lock_customer(conn, row.customer_id, _naive_utc(now))
        if compliance.do_not_call_numbers(conn, [number]):
            return compliance.skip(Reason.ON_DO_NOT_CALL)
        if compliance.opted_out_by_key(conn, row.customer_id, self.ctx.config.optout_key):
            return compliance.skip(Reason.OPTED_OUT_BEFORE_DIAL)
        history = compliance.recent_attempts(
            conn, [row.customer_id], _naive_utc(now - _CAP_HISTORY)
        ).get(row.customer_id, [])
        type_config = self.ctx.config.notice_types.get(row.notice_type)
        return compliance.caps_verdict(
            self.ctx.config.caps,
            type_config.caps if type_config else compliance.Caps(),
            history,
            row.notice_type,
            now,
        )

    def _hold(self, conn: sa.Connection, row: sa.Row, verdict: compliance.Verdict) -> None:
        """A row the locked gate refused: skipped for good, or waiting for its time."""
        if verdict.kind is GateResult.SKIP:
            ledger.transition(conn, row.id, LedgerState.SKIPPED, reason_code=verdict.reason)
            self.counts.skip(verdict.reason)
            log.info("notice %s: skipped at dial reason=%s", row.notice_id, verdict.reason)
            return
        ledger.update_in_state(conn, row.id, LedgerState.SYNTHESIZED, next_attempt_at=verdict.until)
        self.counts.waiting += 1
        self.counts.note(verdict.reason)
        log.info("notice %s: waits until %s (%s)", row.notice_id, verdict.until, verdict.reason)

    def _place(self, row: sa.Row, number: str, key: str) -> None:
        request = CallRequest(
            to=number,
            idempotency_key=key,
            audio_url=self.ctx.audio_url(row.audio_key),
            ring_timeout_s=self.ctx.ring_timeout_s,
            metadata={"notice_id": str(row.notice_id), "ledger_id": str(row.id)},
            status_callback_url=self.ctx.status_callback_url,
        )
        self.ctx.rate_limiter.wait()
        try:
            status = self.ctx.gateway.place_call(request)
        except GatewayPermanentError as exc:
            self._end(row, LedgerState.FAILED, Reason.GATEWAY_REJECTED, outcome=Outcome.REJECTED)
            self.counts.rejected += 1
            log.warning(
                "notice %s to %s: gateway rejected: %s", row.notice_id, mask_phone(number), exc
            )
            return
        except GatewayTransientError as exc:
            status = self._lookup(key, number, row, exc)
            if status is None:
                self.counts.transient += 1
                return
        self._mark_dialed(row, status)
        log.info(
            "notice %s to %s: call %s placed", row.notice_id, mask_phone(number), status.call_id
        )

    def _lookup(self, key: str, number: str, row: sa.Row, exc: Exception) -> CallStatus | None:
        """After an ambiguous failure, ask the gateway whether the call exists."""
        since = row.dialing_started_at or _naive_utc(self.ctx.now())
        try:
            found = self.ctx.gateway.find_call(key, to=number, since=since.replace(tzinfo=dt.UTC))
        except GatewayTransientError:
            found = None
        if found is None:
            log.warning(
                "call %s: gateway failed (%s) and holds no call; left for a retry", key, exc
            )
        return found

    def _mark_dialed(self, row: sa.Row, status: CallStatus) -> None:
        when = _naive_utc(self.ctx.now())
        with self.engine.begin() as conn:
            ledger.transition(
                conn,
                row.id,
                LedgerState.DIALED,
                from_states=[LedgerState.DIALING],
                call_id=status.call_id,
                dialed_at=when,
            )
            conn.execute(
                schema.call_attempts.update()
                .where(
                    schema.call_attempts.c.ledger_id == row.id,
                    schema.call_attempts.c.attempt == row.attempt,
                )
                .values(call_id=status.call_id, dialed_at=when)
            )
        self.counts.dialed += 1

    def _end(
        self, row: sa.Row, state: LedgerState, reason: str, outcome: str | None = None
    ) -> None:
        with self.engine.begin() as conn:
            ledger.transition(conn, row.id, state, reason_code=reason, outcome=outcome)
            if outcome is not None:
                conn.execute(
                    schema.call_attempts.update()
                    .where(
                        schema.call_attempts.c.ledger_id == row.id,
                        schema.call_attempts.c.attempt == row.attempt,
                    )
                    .values(outcome=outcome, ended_at=_naive_utc(self.ctx.now()))
                )
        self.counts.skip(reason)
        log.info("notice %s: %s at dial reason=%s", row.notice_id, state.value, reason)

    def _resume(self, row: sa.Row, contact: Any, number: str | None) -> None:
        """A row an earlier attempt left in ``dialing``: look up before any resend."""
        key = row.idempotency_key
        age = _naive_utc(self.ctx.now()) - (row.dialing_started_at or dt.datetime.min)
        if age < dt.timedelta(seconds=self.ctx.resume_after_s):
            self.counts.waiting += 1
            self.counts.note("dialing_in_progress")
            return
        since = (row.dialing_started_at or _naive_utc(self.ctx.now())).replace(tzinfo=dt.UTC)
        try:
            found = self.ctx.gateway.find_call(key, to=number, since=since)
        except GatewayTransientError as exc:
            log.warning("call %s: lookup failed (%s); left for a retry", key, exc)
            self.counts.transient += 1
            return
        if found is not None:
            self._mark_dialed(row, found)
            return
        # The gateway never accepted it: sending with the same key is safe, if
        # the customer may still be called (time has passed).
        verdict = self._gate(row, contact, number)
        self._note(row, verdict)
        if verdict.kind is GateResult.SKIP:
            self._end(row, LedgerState.FAILED, verdict.reason, outcome=Outcome.NOT_SENT)
            return
        if verdict.kind is GateResult.WAIT:
            self.counts.waiting += 1
            self.counts.note(verdict.reason)
            return
        self._place(row, number, key)


def dial_rows(
    ledger_engine: sa.Engine, crm_engine: sa.Engine, rows: Sequence[sa.Row], ctx: DialContext
) -> DialCounts:
    """Dial every synthesized row that is due (and resolve rows stuck in ``dialing``).

    Transient gateway failures are counted and the row stays in ``dialing``;
    the caller raises afterwards so Airflow retries, and the retry looks each
    call up before sending anything.
    """
    candidates = [r for r in rows if r.state in (LedgerState.SYNTHESIZED, LedgerState.DIALING)]
    with crm_engine.connect() as crm:
        contacts = _contacts(crm, [r.notice_id for r in candidates])
    return _Dialer(ledger_engine, ctx).run(candidates, contacts)
