"""The decision trail: every gate check of a notice and its result, at plan and dial time.

The plan (eligibility, legal basis, text, voice consent, tone, dial claim) and each
dial-time gate (claim, still due, opt-out, phone, do-not-call, calling hours, caps)
stop at the first check that does not allow the call. A gate's answer is therefore
enough to rebuild its checks: those before the deciding one passed, the deciding one
gave the answer, the rest were not reached. One :class:`GateEvaluation` per notice and
gate goes into ``notice_decisions`` with :func:`record_evaluations`, set-based (one
multi-row statement per chunk, never a statement per notice); an identical
re-evaluation (a re-run, a retry) is stored once, a changed one is added beside it.

What the console shows as "why was notice 4711 skipped" is read back with
:func:`trail_of`. No customer data goes into a check's detail: ids, codes and times only.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from voice_notify.db import schema, staging
from voice_notify.db.sql import insert_ignoring_duplicates
from voice_notify.plan.eligibility import segments_of
from voice_notify.reasons import Reason

PLAN = "plan"
DIAL = "dial"
NOT_REACHED = "not_reached"
ALLOW, WAIT, SKIP = "allow", "wait", "skip"

#: The plan's checks in the order they run, with the reason codes each one answers.
#: ``text`` answers every text-frontend code, ``voice`` every consent refusal.
PLAN_CHECKS: tuple[tuple[str, frozenset[str]], ...] = (
    # The notice is in the date's extract; a row an earlier run planned may have left it.
    ("still_due", frozenset({Reason.NOTICE_NO_LONGER_DUE})),
    # Every CRM field read to its type where it enters (voice_notify.extract.fields).
    (
        "fields",
        frozenset(
            {
                Reason.INVALID_CUSTOMER_ID,
                Reason.INVALID_DUE_DATE,
                Reason.INVALID_TIME_ZONE,
                Reason.INVALID_CUSTOMER_NAME,
            }
        ),
    ),
    ("notice_type", frozenset({Reason.UNKNOWN_NOTICE_TYPE})),
    ("opt_out", frozenset({Reason.OPTED_OUT, Reason.INVALID_OPT_OUT})),
    ("legal_basis", frozenset({Reason.NO_CUSTOMER_CONSENT, Reason.INVALID_CONSENT})),
    ("phone", frozenset({Reason.INVALID_PHONE, Reason.PHONE_NON_ASCII_DIGITS})),
    ("variables", frozenset({Reason.INVALID_VARIABLES_JSON})),
    ("text", frozenset()),
    ("voice", frozenset()),
    ("tone", frozenset()),
    ("dial_claim", frozenset({Reason.ALREADY_CONTACTED})),
)

#: The dial-time gate's checks (``voice_notify.dial.dialer``), in order.
DIAL_CHECKS: tuple[tuple[str, frozenset[str]], ...] = (
    ("dial_claim", frozenset({Reason.ALREADY_CONTACTED})),
    ("still_due", frozenset({Reason.NOTICE_NO_LONGER_DUE})),
    ("opt_out", frozenset({Reason.OPTED_OUT_BEFORE_DIAL, Reason.INVALID_OPT_OUT})),
    ("legal_basis", frozenset({Reason.NO_CUSTOMER_CONSENT})),
    ("phone", frozenset({Reason.INVALID_PHONE, Reason.PHONE_NON_ASCII_DIGITS})),
    ("do_not_call", frozenset({Reason.ON_DO_NOT_CALL})),
    ("calling_hours", frozenset({Reason.OUTSIDE_CALLING_HOURS})),
    ("caps", frozenset({Reason.CAP_REACHED})),
)

_CHUNK = 5000


@dataclass(frozen=True)
class Check:
    """One check of a gate: ``allow``, ``wait``, ``skip`` or ``not_reached``."""

    check: str
    result: str
    reason: str | None = None
    detail: str | None = None

    def to_json(self) -> list[Any]:
        values = [self.check, self.result, self.reason, self.detail]
        while values[-1] is None:
            values.pop()
        return values

    @classmethod
    def from_json(cls, raw: Sequence[Any]) -> Check:
        return cls(*raw)


@dataclass(frozen=True)
class GateEvaluation:
    """One gate's answer for one notice: its result and every check it made."""

    notice_id: int
    campaign_date: dt.date
    stage: str  # plan | dial
    attempt: int  # 0 at plan time; the ledger row's attempt at dial time
    result: str  # allow | wait | skip
    reason_code: str | None
    checks: tuple[Check, ...]
    decided_at: dt.datetime  # naive UTC, when the gate answered

    @property
    def verdict(self) -> str:
        return f"{self.result}:{self.reason_code or ''}"[:80]


def _checks(
    order: Sequence[tuple[str, frozenset[str]]],
    deciding: str | None,
    result: str,
    reason: str | None,
    details: Mapping[str, str | None],
) -> tuple[Check, ...]:
    """Checks before ``deciding`` allowed, ``deciding`` answered, the rest were not reached."""
    return _checks_of(order, deciding, result, reason, tuple(details.items()))


# A campaign's notices share a handful of distinct trails (a reason, a notice type, a
# voice and its consent): each is built once, and its JSON made once (``_checks_json``).
@functools.lru_cache(maxsize=4096)
def _checks_of(
    order: tuple[tuple[str, frozenset[str]], ...],
    deciding: str | None,
    result: str,
    reason: str | None,
    detail_items: tuple[tuple[str, str | None], ...],
) -> tuple[Check, ...]:
    details = dict(detail_items)
    checks, reached = [], True
    for name, _ in order:
        if not reached:
            checks.append(Check(name, NOT_REACHED))
        elif name == deciding:
            checks.append(Check(name, result, reason, details.get(name)))
            reached = False
        else:
            checks.append(Check(name, ALLOW, None, details.get(name)))
    return tuple(checks)


def _deciding_check(
    order: Sequence[tuple[str, frozenset[str]]], reason: str | None, fallback: str
) -> str | None:
    if reason is None:
        return None
    for name, reasons in order:
        if reason in reasons:
            return name
    return fallback


def plan_evaluation(
    decision: Any,
    campaign_date: dt.date,
    config: Any,
    *,
    claimed_elsewhere: bool = False,
    decided_at: dt.datetime,
) -> GateEvaluation:
    """The plan's gate for one ``eligibility.Decision`` (after ``assign_voices``).

    :param claimed_elsewhere: another campaign date holds the notice's dial claim
    """
    from voice_notify.voices.registry import REASON_CODES as CONSENT_CODES

    reason = decision.reason_code
    if reason is None and claimed_elsewhere:
        reason = Reason.ALREADY_CONTACTED
    fallback = "voice" if reason in CONSENT_CODES else "text"
    deciding = _deciding_check(PLAN_CHECKS, reason, fallback)
    type_config = config.notice_types.get(decision.notice_type)
    segments = segments_of(decision)
    details: dict[str, str | None] = {
        "notice_type": decision.notice_type or None,
        "legal_basis": type_config.consent_basis if type_config else None,
        "text": f"{len(segments)} segments, locale {decision.locale}" if segments else None,
        "voice": _voice_detail(decision, type_config),
        "tone": _tone_detail(decision),
    }
    if deciding == "voice":
        details["voice"] = getattr(decision.consent, "profile_id", None) or None
    return GateEvaluation(
        notice_id=decision.notice_id,
        campaign_date=campaign_date,
        stage=PLAN,
        attempt=0,
        result=ALLOW if reason is None else SKIP,
        reason_code=reason,
        checks=_checks(PLAN_CHECKS, deciding, SKIP, reason, details),
        decided_at=decided_at,
    )


def absent_evaluation(
    notice_id: int, campaign_date: dt.date, decided_at: dt.datetime
) -> GateEvaluation:
    """The plan's gate for a notice an earlier run planned that this run's extract lacks."""
    reason = Reason.NOTICE_NO_LONGER_DUE
    return GateEvaluation(
        notice_id=notice_id,
        campaign_date=campaign_date,
        stage=PLAN,
        attempt=0,
        result=SKIP,
        reason_code=reason,
        checks=_checks(
            PLAN_CHECKS, "still_due", SKIP, reason, {"still_due": "not in the date's extract"}
        ),
        decided_at=decided_at,
    )


def _voice_detail(decision: Any, type_config: Any) -> str | None:
    if not decision.planned:
        return None
    consent = decision.consent
    profile = decision.voice.profile
    if consent is not None and consent.allowed:
        return f"{profile} on consent {consent.consent_id}"
    if type_config is None or type_config.voice_profile is None:
        return "standard voice (the notice type names no cloned voice)"
    refusal = consent.reason_code if consent is not None else None
    return f"standard voice (fallback: {refusal or 'no consenting profile'})"


def _tone_detail(decision: Any) -> str | None:
    emotion = getattr(decision.voice, "emotion", None)
    if not decision.planned:
        return None
    rule = getattr(decision, "tone_rule", None)
    if emotion is None:
        return "the voice's only variant" if decision.voice.profile == "standard" else None
    return f"{emotion} ({rule})" if rule else emotion


def dial_evaluation(
    row: Any, kind: str, reason: str | None, decided_at: dt.datetime, until: Any = None
) -> GateEvaluation:
    """The dial-time gate for one ledger row: its ``compliance.Verdict`` as checks.

    :param kind: the verdict's ``GateResult`` value (allow, wait, skip)
    :param until: for a wait, the naive-UTC time worth trying again
    """
    deciding = _deciding_check(DIAL_CHECKS, reason, "dial_claim")
    details = {}
    if deciding is not None and until is not None:
        details[deciding] = f"wait until {until:%Y-%m-%d %H:%M} UTC"
    return GateEvaluation(
        notice_id=row.notice_id,
        campaign_date=row.campaign_date,
        stage=DIAL,
        attempt=int(row.attempt or 1),
        result=str(kind),
        reason_code=reason,
        checks=_checks(DIAL_CHECKS, deciding, str(kind), reason, details),
        decided_at=decided_at,
    )


_json_by_checks: dict[int, tuple[tuple[Check, ...], str]] = {}


def _checks_json(checks: tuple[Check, ...]) -> str:
    """The stored form of a gate's checks (unreached ones left out)."""
    # By identity: memoized trails (``_checks_of``) recur as the same tuple, and hashing
    # ten checks would cost about what the JSON does. The entry keeps its tuple alive, so
    # its id cannot be reused while it is here.
    known = _json_by_checks.get(id(checks))
    if known is not None and known[0] is checks:
        return known[1]
    text = json.dumps(
        [c.to_json() for c in checks if c.result != NOT_REACHED],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    if len(_json_by_checks) >= 4096:
        _json_by_checks.clear()
    _json_by_checks[id(checks)] = (checks, text)
    return text


def evaluation_row(evaluation: GateEvaluation) -> dict[str, Any]:
    """The ``notice_decisions`` row of an evaluation."""
    return {
        "notice_id": evaluation.notice_id,
        "campaign_date": evaluation.campaign_date,
        "stage": evaluation.stage,
        "attempt": evaluation.attempt,
        "verdict": evaluation.verdict,
        "result": evaluation.result,
        "reason_code": evaluation.reason_code,
        "checks": _checks_json(evaluation.checks),
        "decided_at": evaluation.decided_at,
    }


def record_evaluations(conn: sa.Connection, evaluations: Iterable[GateEvaluation]) -> int:
    """Write gate evaluations set-based; one already stored with the same verdict is kept.

    Returns how many rows the statements reported inserted (drivers that cannot tell
    report nothing, counted as 0).
    """
    return record_rows(conn, map(evaluation_row, evaluations))


def record_rows(conn: sa.Connection, rows: Iterable[dict[str, Any]]) -> int:
    """:func:`record_evaluations` for rows :func:`evaluation_row` made."""
    table = schema.notice_decisions
    keys = ("notice_id", "campaign_date", "stage", "attempt", "verdict")
    if conn.dialect.name == "postgresql":
        statement = None  # COPY, then one INSERT ... SELECT per chunk
    else:
        statement = insert_ignoring_duplicates(conn, table, keys)

    def write(rows: list[dict[str, Any]]) -> int:
        if statement is None:
            return staging.insert_copied(conn, table, rows, keys)
        return max(conn.execute(statement, rows).rowcount, 0)

    written = 0
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            written += write(chunk)
            chunk = []
    if chunk:
        written += write(chunk)
    return written


def plan_trail_row(
    decision: Any,
    campaign_date: dt.date,
    config: Any,
    decided_at: dt.datetime,
    claimed_elsewhere: bool = False,
) -> dict[str, Any]:
    """The ``notice_decisions`` row of the plan's evaluation of one decision."""
    return evaluation_row(
        plan_evaluation(
            decision,
            campaign_date,
            config,
            claimed_elsewhere=claimed_elsewhere,
            decided_at=decided_at,
        )
    )


def record_plan_trail(
    conn: sa.Connection,
    decisions: Sequence[Any],
    campaign_date: dt.date,
    config: Any,
    decided_at: dt.datetime | None = None,
    *,
    claimed_elsewhere: set[int] | None = None,
) -> int:
    """The plan's evaluation of every decision, written in bulk (once per chunk of notices).

    A decision's ``trail_row``, where its worker made it (unclaimed, at ``decided_at``),
    is used as it is.

    :param claimed_elsewhere: the notices another date claimed, when already looked up
    """
    from voice_notify import ledger

    decided_at = decided_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    claimed = claimed_elsewhere
    if claimed is None:
        claimed = ledger.notices_settled_elsewhere(
            conn, [d.notice_id for d in decisions if d.planned], campaign_date
        )

    def row(decision: Any) -> dict[str, Any]:
        made = getattr(decision, "trail_row", None)
        unclaimed = decision.notice_id not in claimed
        if made is not None and unclaimed and made["decided_at"] == decided_at:
            return made
        return plan_trail_row(decision, campaign_date, config, decided_at, not unclaimed)

    return record_rows(conn, map(row, decisions))


def trail_of(conn: sa.Connection, notice_id: int, campaign_date: dt.date) -> list[GateEvaluation]:
    """A notice's evaluations on a campaign date, oldest first, with unreached checks."""
    table = schema.notice_decisions
    rows = conn.execute(
        sa.select(table)
        .where(table.c.notice_id == notice_id, table.c.campaign_date == campaign_date)
        .order_by(table.c.decided_at, table.c.id)
    )
    out = []
    for row in rows:
        order = PLAN_CHECKS if row.stage == PLAN else DIAL_CHECKS
        seen = {c.check: c for c in map(Check.from_json, json.loads(row.checks))}
        checks = tuple(seen.get(name, Check(name, NOT_REACHED)) for name, _ in order)
        out.append(
            GateEvaluation(
                notice_id=row.notice_id,
                campaign_date=row.campaign_date,
                stage=row.stage,
                attempt=row.attempt,
                result=row.result,
                reason_code=row.reason_code,
                checks=checks,
                decided_at=row.decided_at,
            )
        )
    return out
