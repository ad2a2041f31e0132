"""The plan step: eligibility, text, and batches for one campaign date.

Every extracted notice gets exactly one decision: planned (with its speech
segments) or skipped with a reason code. Decisions go into the dispatch ledger
insert-if-absent, so a re-run of the plan keeps what an earlier run decided
and only (re)batches rows still waiting for synthesis.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from synthesis.manifest import BatchItem, VoiceSpec, item_seed
from voice_notify import ledger, reasons
from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164
from voice_notify.plan.campaigns import CampaignConfig

log = logging.getLogger(__name__)

_DIALECT_LOCALES = {"cantonese": "yue", "english": "en"}


@dataclass(frozen=True)
class Decision:
    notice_id: int
    customer_id: int | None
    notice_type: str
    locale: str
    reason_code: str | None  # None: planned
    segments: tuple[dict[str, Any], ...] = ()
    dialect: str | None = None
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    consent: Any = None  # voice_profiles.ConsentDecision of a cloned voice

    @property
    def planned(self) -> bool:
        return self.reason_code is None


def locale_for(dialect: str | None) -> str:
    """The template locale for a customer's preferred dialect (Mandarin unless known)."""
    return _DIALECT_LOCALES.get((dialect or "").lower(), "cmn")


def in_window(notice: Mapping[str, Any], campaign_date: dt.date, config: CampaignConfig) -> bool:
    """Whether a notice is due within its type's look-ahead of the campaign date.

    Notices of unknown types are always in the window: they must be recorded
    as skipped, not silently ignored.
    """
    type_config = config.notice_types.get(notice["notice_type"])
    if type_config is None:
        return True
    due = notice["due_date"]
    if isinstance(due, str):
        due = dt.date.fromisoformat(due[:10])
    return campaign_date <= due <= campaign_date + dt.timedelta(days=type_config.lookahead_days)


def decide(notice: Mapping[str, Any], composer: Any, config: CampaignConfig) -> Decision:
    """Eligibility and text for one notice; never raises for bad data."""
    from synthesis.text import NoticeTextError

    notice_type = notice["notice_type"] or ""
    locale = locale_for(notice.get("preferred_dialect"))

    def skip(reason: str) -> Decision:
        return Decision(notice["notice_id"], notice.get("customer_id"), notice_type, locale, reason)

    type_config = config.notice_types.get(notice_type)
    if type_config is None:
        return skip(reasons.UNKNOWN_NOTICE_TYPE)
    if notice.get("voice_opt_out"):
        return skip(reasons.OPTED_OUT)
    if type_config.consent_basis == "consent" and not notice.get("voice_consent"):
        return skip(reasons.NO_CUSTOMER_CONSENT)
    try:
        to_e164(notice.get("phone"))
    except InvalidPhoneNumber:
        return skip(reasons.INVALID_PHONE)
    variables = notice.get("variables")
    if isinstance(variables, str):
        try:
            variables = json.loads(variables)
        except json.JSONDecodeError:
            return skip(reasons.INVALID_VARIABLES_JSON)
    if not isinstance(variables, dict):
        return skip(reasons.INVALID_VARIABLES_JSON)
    context = {
        "organization": type_config.organization,
        "service_phone": type_config.service_phone,
        "customer_name": notice.get("customer_name") or "",
        "confirm_key": config.confirm_key,
        "optout_key": config.optout_key,
    }
    try:
        composed = composer.compose(notice_type, locale, variables, context)
    except NoticeTextError as exc:
        return skip(exc.reason_code)
    return Decision(
        notice["notice_id"],
        notice.get("customer_id"),
        notice_type,
        locale,
        None,
        tuple(segment.to_dict() for segment in composed.segments),
        dialect=(notice.get("preferred_dialect") or "").lower() or None,
    )


def decide_all(
    notices: Iterable[Mapping[str, Any]],
    campaign_date: dt.date,
    notice_types: Sequence[str],
    composer: Any,
    config: CampaignConfig,
) -> list[Decision]:
    """Decisions for the notices of this campaign (its types, unknown types, in window)."""
    wanted = set(notice_types)
    decisions = []
    for notice in notices:
        known = notice["notice_type"] in config.notice_types
        if known and notice["notice_type"] not in wanted:
            continue
        if not in_window(notice, campaign_date, config):
            continue
        decision = decide(notice, composer, config)
        log.info(
            "notice %s (%s, %s): %s",
            decision.notice_id,
            decision.notice_type or "<none>",
            mask_phone(notice.get("phone")),
            "planned" if decision.planned else f"skipped reason={decision.reason_code}",
        )
        decisions.append(decision)
    return decisions


def assign_voices(
    decisions: Sequence[Decision], book: Any, config: CampaignConfig, on: dt.date
) -> list[Decision]:
    """Choose each planned notice's voice: a cloned agent voice only under a valid consent.

    ``book`` is a ``voice_profiles.ConsentBook`` loaded once for the plan. A notice
    type without ``voice_profile`` speaks in the standard voice. With one, the
    consent must cover the notice type and locale on the campaign date; when no
    profile qualifies the notice falls back to the standard voice, or is skipped
    with the refusal's reason if the type forbids the fallback. A dialect the
    model was trained on goes along as the instruct.
    """
    from synthesis.instructs import default_catalogue

    catalogue = default_catalogue()
    dialects = {i.key for i in catalogue.of_kind("dialect") if i.notices}
    chosen = []
    for decision in decisions:
        if not decision.planned:
            chosen.append(decision)
            continue
        instruct = _DIALECT_INSTRUCTS.get(decision.dialect or "", decision.dialect)
        instruct = instruct if instruct in dialects else None
        wanted = config.notice_types[decision.notice_type].voice_profile
        if wanted is None:
            chosen.append(replace(decision, voice=VoiceSpec("standard", instruct)))
            continue
        consent = book.choose(
            decision.notice_type, decision.locale, on, None if wanted == "auto" else wanted
        )
        if consent.allowed:
            voice = VoiceSpec(consent.profile_id, instruct)
            chosen.append(replace(decision, voice=voice, consent=consent))
        elif config.notice_types[decision.notice_type].standard_voice_fallback:
            chosen.append(replace(decision, voice=VoiceSpec("standard", instruct)))
        else:
            chosen.append(replace(decision, reason_code=consent.reason_code))
        log.info(
            "notice %s: voice %s (%s)",
            decision.notice_id,
            chosen[-1].voice.profile if chosen[-1].planned else "-",
            "consent " + str(consent.consent_id) if consent.allowed else consent.reason_code,
        )
    return chosen


# CRM dialect names that differ from the instruct catalogue's keys.
_DIALECT_INSTRUCTS = {"cantonese": "guangdong"}


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
                "reason_code": reasons.ALREADY_CONTACTED
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
            reasons.ALREADY_CONTACTED
            if row.notice_id in claimed_elsewhere
            else decision.reason_code
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
