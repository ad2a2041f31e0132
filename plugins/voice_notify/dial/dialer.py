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

A transient gateway failure (a timeout, a 5xx, a refused connection) is retried
here, per call, with bounded exponential backoff (``DialContext.place_attempts``),
and every retry looks the call up by its key before sending it again. A call still
not placed after that stays in ``dialing``: the reconcile DAG resumes it (looking it
up first, again). The batch counts such calls (``left_for_reconcile``) and judges
whether the gateway looks down (``gateway_down``: most of the calls it tried could
not be placed); only then should the task fail.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from tenacity import wait_exponential as exponential

from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import is_transient_db_error, load_sql
from voice_notify.dial.ratelimit import CallPacer
from voice_notify.extract import fields
from voice_notify.gateway.base import (
    CallRequest,
    CallStatus,
    GatewayPermanentError,
    GatewayTransientError,
    VoiceGateway,
)
from voice_notify.ledger import LedgerState
from voice_notify.logsafe import escape
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
    # Calls (or look-ups) the gateway still failed after the in-task retries: left in
    # ``dialing``/``synthesized`` for the reconcile DAG, which looks each up first.
    transient: int = 0
    attempted: int = 0  # calls this pass asked the gateway for (placements and look-ups)
    db_errors: int = 0  # rows left as they were after a dropped database connection
    last_error: str | None = None
    gateway: str = ""
    place_attempts: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.note(reason)

    @property
    def left_for_reconcile(self) -> int:
        return self.transient + self.db_errors

    @property
    def gateway_down(self) -> bool:
        """Whether the gateway looks down: most calls this pass tried were not placed
        (database errors do not count: they say nothing about the gateway)."""
        return self.attempted > 0 and 2 * self.transient > self.attempted

    def as_dict(self) -> dict[str, Any]:
        return {
            "synthesized": self.synthesized,
            "synthesis_failed": self.synthesis_failed,
            "dialed": self.dialed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "rejected": self.rejected,
            "transient": self.transient,
            "left_for_reconcile": self.left_for_reconcile,
            "attempted": self.attempted,
            "db_errors": self.db_errors,
            "gateway_down": self.gateway_down,
            "reasons": dict(sorted(self.reasons.items())),
        }


class GatewayDown(RuntimeError):
    """Most calls of a dial pass could not be placed after their retries: the gateway
    looks down. The message is for the operator who sees the failed task."""

    def __init__(self, counts: DialCounts) -> None:
        super().__init__(
            f"voice gateway {counts.gateway!r} looks down: {counts.transient} of "
            f"{counts.attempted} calls in this batch could not be placed, each after "
            f"{counts.place_attempts} tries with a look-up before every resend (last error: "
            f"{counts.last_error}). No call was placed twice; the ones not placed stay open "
            "and voice_notice_reconcile places them once the gateway answers. Check the "
            "gateway (Connection voice_gateway), then clear this task to retry it now."
        )
        self.counts = counts


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
    # Per-call retries of transient gateway failures: tries in all, and the
    # exponential backoff between them (first wait, longest wait), in seconds.
    place_attempts: int = 4
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0
    sleep: Callable[[float], None] = time.sleep

    def longest_placement_s(self, request_timeout_s: float) -> float:
        """How long one call's placement can stay in a worker's hands: every try a
        look-up and a send, each up to the request timeout, and the backoff between
        tries (the pacing wait aside: a paced call has not been sent yet)."""
        waits = sum(
            min(self.retry_initial_s * 2**n, self.retry_max_s)
            for n in range(max(self.place_attempts - 1, 0))
        )
        return self.place_attempts * 2 * request_timeout_s + waits


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
        self.phone_reasons: dict[int, str] = {}
        self.riders: Mapping[int, Sequence[sa.Row]] = {}  # by lead ledger id
        self.contacts: Mapping[int, Any] = {}  # the CRM's row of each notice, riders too

    def run(
        self,
        rows: Sequence[sa.Row],
        contacts: Mapping[int, Any],
        riders: Mapping[int, Sequence[sa.Row]] | None = None,
    ) -> DialCounts:
        """Dial ``rows``; ``riders``: by lead ledger id, the notices spoken in its call."""
        self.riders = riders or {}
        self.contacts = contacts
        now = self.ctx.now()
        numbers = {}
        for row in rows:
            contact = contacts.get(row.notice_id)
            try:
                numbers[row.notice_id] = to_e164(contact.phone) if contact else None
            except InvalidPhoneNumber as exc:
                numbers[row.notice_id] = None
                self.phone_reasons[row.notice_id] = exc.reason
        with self.engine.connect() as conn:
            self.history = compliance.recent_attempts(
                conn, [r.customer_id for r in rows], _naive_utc(now - _CAP_HISTORY)
            )
            self.blocked = compliance.do_not_call_numbers(conn, filter(None, numbers.values()))
            self.claimed_elsewhere = ledger.notices_claimed_by_others(
                conn, {r.notice_id: r.id for r in rows}
            )
        compliance.ensure_customer_locks(self.engine, [r.customer_id for r in rows])
        try:
            self._dial_each(rows, contacts, numbers)
        finally:
            # What the gate answered, whatever happened after: the console's trail.
            with self.engine.begin() as conn:
                trail.record_evaluations(conn, self.trail)
        return self.counts

    def _dial_each(
        self, rows: Sequence[sa.Row], contacts: Mapping[int, Any], numbers: Mapping[int, Any]
    ) -> None:
        """Each row once: dialled, resumed from ``dialing``, or left for reconcile when the
        database drops a connection (every ledger write is conditional)."""
        last_db_error: sa.exc.DBAPIError | None = None
        for done, row in enumerate(rows, start=1):
            contact, number = contacts.get(row.notice_id), numbers.get(row.notice_id)
            try:
                if row.state == LedgerState.DIALING:
                    self._resume(row, contact, number)
                elif row.state == LedgerState.SYNTHESIZED:
                    self._dial(row, contact, number)
            except sa.exc.DBAPIError as exc:
                if not is_transient_db_error(exc):
                    raise
                # A dropped connection (a failover, pg_terminate_backend): every ledger
                # write is conditional, so the row is left as it is (synthesized, or in
                # dialing, looked up before any resend) for the reconcile DAG.
                last_db_error = exc
                self.counts.db_errors += 1
                log.warning(
                    "notice %s: database error (%s); left for voice_notice_reconcile",
                    row.notice_id,
                    type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__,
                )
                if self.counts.db_errors >= 3 and 2 * self.counts.db_errors > done:
                    raise  # the database looks down: let the task fail and retry
        if last_db_error is not None and 2 * self.counts.db_errors > len(rows):
            raise last_db_error

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
        opted_out = fields.parse_flag(contact.voice_opt_out)
        if opted_out is True:
            return compliance.skip(Reason.OPTED_OUT_BEFORE_DIAL)
        if opted_out is not False:  # unreadable now: never read as "no"
            return compliance.skip(Reason.INVALID_OPT_OUT)
        type_config = self.ctx.config.notice_types.get(row.notice_type)
        # The legal basis again: a customer may have withdrawn consent since the plan.
        needs_consent = type_config is not None and type_config.consent_basis == "consent"
        consent = fields.parse_flag(getattr(contact, "voice_consent", None))
        if needs_consent and consent is not True:
            return compliance.skip(Reason.NO_CUSTOMER_CONSENT)
        if number is None:
            return compliance.skip(self.phone_reasons.get(row.notice_id, Reason.INVALID_PHONE))
        if number in self.blocked:
            return compliance.skip(Reason.ON_DO_NOT_CALL)
        now = self.ctx.now()
        zone = compliance.customer_zone(fields.valid_time_zone(contact.time_zone), number)
        verdict = compliance.hours_verdict(self.ctx.config.calling_hours, now, zone)
        if not verdict.allowed:
            return verdict
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
                self._wait(conn, row, verdict)
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
                self._skip(conn, row, Reason.ALREADY_CONTACTED)
                return
            self._claim_riders(conn, row)
            if not ledger.transition(
                conn,
                row.id,
                LedgerState.DIALING,
                from_states=[LedgerState.SYNTHESIZED],
                carry=self._carries(row),
                idempotency_key=key,
                dialing_started_at=started,
                call_id=None,
                reason_code=None,  # a dry run's hold, or an earlier wait's reason
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

    def _carries(self, row: sa.Row) -> bool:
        """Whether a change of this row moves other notices (it leads a merged call)."""
        return bool(self.riders.get(row.id))

    def _claim_riders(self, conn: sa.Connection, row: sa.Row) -> None:
        """The notices spoken in this row's call: each claimed with the call, or set aside
        (skipped with its reason) when it is no longer due or another date holds it; the
        call itself goes ahead. The rest enter ``dialing`` with the lead
        (``ledger.transition``)."""
        for rider in self.riders.get(row.id, ()):
            contact = self.contacts.get(rider.notice_id)
            reason = None
            if contact is None or contact.status != "due":
                reason = Reason.NOTICE_NO_LONGER_DUE
            elif not ledger.claim_notice(conn, rider.notice_id, rider.id, rider.campaign_date):
                reason = Reason.ALREADY_CONTACTED
            if reason is not None and ledger.transition(
                conn,
                rider.id,
                LedgerState.SKIPPED,
                from_states=[LedgerState.SYNTHESIZED],
                carry=False,  # a rider carries no one
                reason_code=reason,
            ):
                self.counts.skip(reason)
                log.info(
                    "notice %s: left out of its merged call reason=%s", rider.notice_id, reason
                )

    def _gate_locked(
        self,
        conn: sa.Connection,
        row: sa.Row,
        number: str,
        now: dt.datetime,
        own_key: str | None = None,
    ) -> compliance.Verdict:
        """Do-not-call, an opt-out key pressed in another call, and the caps, read fresh
        under the customer's lock (held until the caller's transaction ends).

        :param own_key: the attempt being resumed, already in the history: it must not
            cap itself
        """
        if row.customer_id is not None:
            compliance.lock_customer(conn, row.customer_id, _naive_utc(now))
        if compliance.do_not_call_numbers(conn, [number]):
            return compliance.skip(Reason.ON_DO_NOT_CALL)
        if row.customer_id is None:
            return compliance.ALLOW  # no customer to cap (the CRM row has no id)
        if compliance.opted_out_by_key(conn, row.customer_id, self.ctx.config.optout_key):
            return compliance.skip(Reason.OPTED_OUT_BEFORE_DIAL)
        history = [
            attempt
            for attempt in compliance.recent_attempts(
                conn, [row.customer_id], _naive_utc(now - _CAP_HISTORY)
            ).get(row.customer_id, [])
            if attempt.idempotency_key != own_key
        ]
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
        self._note(row, verdict)
        if verdict.kind is GateResult.SKIP:
            self._skip(conn, row, verdict.reason)
            log.info("notice %s: skipped at dial reason=%s", row.notice_id, verdict.reason)
            return
        self._wait(conn, row, verdict)

    def _skip(self, conn: sa.Connection, row: sa.Row, reason: str) -> None:
        """A row that will not be called on this date, for ``reason``."""
        ledger.transition(
            conn, row.id, LedgerState.SKIPPED, carry=self._carries(row), reason_code=reason
        )
        self.counts.skip(reason)

    def _wait(self, conn: sa.Connection, row: sa.Row, verdict: compliance.Verdict) -> None:
        """A row that may be called later (calling hours, a cap): it waits until then."""
        ledger.update_in_state(
            conn,
            row.id,
            LedgerState.SYNTHESIZED,
            carry=self._carries(row),
            next_attempt_at=verdict.until,
        )
        self.counts.waiting += 1
        self.counts.note(verdict.reason)
        log.info("notice %s: waits until %s (%s)", row.notice_id, verdict.until, verdict.reason)

    def _place(self, row: sa.Row, number: str, key: str, counted: bool = False) -> None:
        request = CallRequest(
            to=number,
            idempotency_key=key,
            audio_url=self.ctx.audio_url(row.audio_key),
            ring_timeout_s=self.ctx.ring_timeout_s,
            metadata={"notice_id": str(row.notice_id), "ledger_id": str(row.id)},
            status_callback_url=self.ctx.status_callback_url,
        )
        self.counts.attempted += not counted
        try:
            status = self._place_with_retries(request, row, number)
        except GatewayPermanentError as exc:
            self._end(row, LedgerState.FAILED, Reason.GATEWAY_REJECTED, outcome=Outcome.REJECTED)
            self.counts.rejected += 1
            log.warning(
                "notice %s to %s: gateway rejected: %s",
                row.notice_id,
                mask_phone(number),
                escape(exc),
            )
            return
        except GatewayTransientError as exc:
            self.counts.transient += 1
            self.counts.last_error = escape(exc, 300)
            log.warning(
                "call %s: not placed after %d tries (%s); left for voice_notice_reconcile",
                key,
                self.ctx.place_attempts,
                escape(exc),
            )
            return
        self._mark_dialed(row, status)
        log.info(
            "notice %s to %s: call %s placed", row.notice_id, mask_phone(number), status.call_id
        )

    def _place_with_retries(self, request: CallRequest, row: sa.Row, number: str) -> CallStatus:
        """Place the call; after a transient failure look it up, and send again only if the
        gateway holds none, with bounded exponential backoff between tries.

        :raises GatewayTransientError: the last failure, when every try failed
        :raises GatewayPermanentError: the gateway refused the request itself
        """
        tries = 0
        since = (row.dialing_started_at or _naive_utc(self.ctx.now())).replace(tzinfo=dt.UTC)

        def attempt() -> CallStatus:
            nonlocal tries
            tries += 1
            if tries > 1:
                # The last try may have reached the gateway: never send blind.
                found = self.ctx.gateway.find_call(request.idempotency_key, to=number, since=since)
                if found is not None:
                    return found
            self.ctx.rate_limiter.wait()
            return self.ctx.gateway.place_call(request)

        retrying = Retrying(
            stop=stop_after_attempt(self.ctx.place_attempts),
            wait=exponential(multiplier=self.ctx.retry_initial_s, max=self.ctx.retry_max_s),
            retry=retry_if_exception_type(GatewayTransientError),
            sleep=self.ctx.sleep,
            reraise=True,
            before_sleep=lambda state: log.info(
                "call %s: try %d failed (%s); looking it up before try %d",
                request.idempotency_key,
                state.attempt_number,
                escape(state.outcome.exception()),
                state.attempt_number + 1,
            ),
        )
        try:
            return retrying(attempt)
        except GatewayTransientError:
            # The last try may have been accepted all the same (a timeout after accept).
            with contextlib.suppress(GatewayTransientError):
                found = self.ctx.gateway.find_call(request.idempotency_key, to=number, since=since)
                if found is not None:
                    return found
            raise

    def _mark_dialed(self, row: sa.Row, status: CallStatus) -> None:
        when = _naive_utc(self.ctx.now())
        with self.engine.begin() as conn:
            ledger.transition(
                conn,
                row.id,
                LedgerState.DIALED,
                from_states=[LedgerState.DIALING],
                carry=self._carries(row),
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
            ledger.transition(
                conn, row.id, state, carry=self._carries(row), reason_code=reason, outcome=outcome
            )
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
        self.counts.attempted += 1
        try:
            found = self._find_with_retries(key, number, since)
        except GatewayTransientError as exc:
            log.warning("call %s: lookup failed (%s); left for a retry", key, escape(exc))
            self.counts.transient += 1
            self.counts.last_error = escape(exc, 300)
            return
        if found is not None:
            self._mark_dialed(row, found)
            return
        # The gateway never accepted it: sending with the same key is safe, if
        # the customer may still be called (time has passed) - the same gate as a first
        # dial, the parts another dial task can change read under the customer's lock.
        verdict = self._gate(row, contact, number)
        if verdict.kind is GateResult.ALLOW:
            with self.engine.begin() as conn:
                verdict = self._gate_locked(conn, row, number, self.ctx.now(), own_key=key)
        self._note(row, verdict)
        if verdict.kind is GateResult.SKIP:
            self._end(row, LedgerState.FAILED, verdict.reason, outcome=Outcome.NOT_SENT)
            return
        if verdict.kind is GateResult.WAIT:
            self.counts.waiting += 1
            self.counts.note(verdict.reason)
            return
        self._place(row, number, key, counted=True)

    def _find_with_retries(self, key: str, number: str | None, since: dt.datetime):
        retrying = Retrying(
            stop=stop_after_attempt(self.ctx.place_attempts),
            wait=exponential(multiplier=self.ctx.retry_initial_s, max=self.ctx.retry_max_s),
            retry=retry_if_exception_type(GatewayTransientError),
            sleep=self.ctx.sleep,
            reraise=True,
        )
        return retrying(self.ctx.gateway.find_call, key, to=number, since=since)


def dial_rows(
    ledger_engine: sa.Engine, crm_engine: sa.Engine, rows: Sequence[sa.Row], ctx: DialContext
) -> DialCounts:
    """Dial every synthesized row that is due (and resolve rows stuck in ``dialing``).

    Transient gateway failures are retried per call (looking the call up before each
    resend); a call that still fails stays in ``dialing`` for the reconcile DAG and is
    counted in ``left_for_reconcile``. The caller fails the task only when
    ``gateway_down`` says most of the calls could not be placed.
    """
    # A notice spoken in another notice's call (``call_with``) is dialled with that call.
    candidates = [
        r
        for r in rows
        if r.state in (LedgerState.SYNTHESIZED, LedgerState.DIALING)
        and getattr(r, "call_with", None) is None
    ]
    with ledger_engine.connect() as conn:
        riders = ledger.riders_of(conn, [r.id for r in candidates])
    with crm_engine.connect() as crm:
        contacts = _contacts(
            crm,
            [r.notice_id for r in candidates]
            + [rider.notice_id for group in riders.values() for rider in group],
        )
    counts = _Dialer(ledger_engine, ctx).run(candidates, contacts, riders)
    counts.gateway, counts.place_attempts = ctx.gateway.name, ctx.place_attempts
    if counts.left_for_reconcile:
        log.warning(
            "%d of %d calls not placed after %d tries each: left for voice_notice_reconcile%s",
            counts.left_for_reconcile,
            counts.attempted,
            ctx.place_attempts,
            " (the gateway looks down)" if counts.gateway_down else "",
        )
    return counts
