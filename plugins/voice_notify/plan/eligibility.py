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
from dataclasses import dataclass, field
from typing import Any

from synthesis.manifest import VoiceSpec
from voice_notify.extract.fields import INVALID_REASON, clean_notice
from voice_notify.logsafe import escape
from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.reasons import Reason

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
    tone_rule: str | None = None  # why ``voice.emotion`` (plan.voices.assign_voices)
    #: The manifest line's JSON after the ledger id (``BatchItem.json_tail``), made where
    #: the plan decides (its worker processes); None: made when the item is written.
    item_tail: str | None = field(default=None, compare=False, repr=False)
    #: Its plan trail row (``trail.plan_trail_row``, not claimed by another date), made
    #: where the plan decides; None: made when the trail is written.
    trail_row: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def planned(self) -> bool:
        return self.reason_code is None


def segments_of(decision: Any) -> tuple[dict[str, Any], ...]:
    """A decision's segments, also where the plan's deciders shed them: a decision whose
    manifest line is made (``item_tail``) comes back from a worker process without them,
    since the line holds them (they crossed the pipe twice, a third of its bytes)."""
    tail = getattr(decision, "item_tail", None)  # the trail takes any decision-like object
    if decision.segments or tail is None:
        return decision.segments
    return tuple(json.loads("{" + tail)["segments"])


def locale_for(dialect: str | None) -> str:
    """The template locale for a customer's preferred dialect (Mandarin unless known)."""
    return _DIALECT_LOCALES.get((dialect or "").lower(), "cmn")


def in_window(notice: Mapping[str, Any], campaign_date: dt.date, config: CampaignConfig) -> bool:
    """Whether a notice is due within its type's look-ahead of the campaign date.

    Notices of unknown types, and notices whose due date is not a date, are always in
    the window: they must be recorded as skipped, not silently ignored.
    """
    return _in_window(clean_notice(notice), campaign_date, config)


def _in_window(notice: Mapping[str, Any], campaign_date: dt.date, config: CampaignConfig) -> bool:
    type_config = config.notice_types.get(notice["notice_type"])
    if type_config is None or notice["due_date"] is None:
        return True
    due = dt.date.fromisoformat(notice["due_date"])
    return campaign_date <= due <= campaign_date + dt.timedelta(days=type_config.lookahead_days)


def decide(notice: Mapping[str, Any], composer: Any, config: CampaignConfig) -> Decision:
    """Eligibility and text for one notice; never raises for bad data.

    Every field is read to its type first (``extract.fields.clean_notice``); a field
    that has none is the skip reason, after the notice type and the opt-out.
    """
    return _decide(clean_notice(notice), composer, config)


def _decide(notice: Mapping[str, Any], composer: Any, config: CampaignConfig) -> Decision:
    """``decide`` for a row ``clean_notice`` made."""
    from synthesis.text import NoticeTextError

    notice_type = notice["notice_type"] or ""
    locale = locale_for(notice.get("preferred_dialect"))

    def skip(reason: str) -> Decision:
        return Decision(notice["notice_id"], notice.get("customer_id"), notice_type, locale, reason)

    type_config = config.notice_types.get(notice_type)
    if type_config is None:
        return skip(Reason.UNKNOWN_NOTICE_TYPE)
    invalid = notice.get(INVALID_REASON)
    if notice.get("voice_opt_out") and invalid != Reason.INVALID_OPT_OUT:
        return skip(Reason.OPTED_OUT)
    if invalid:
        return skip(invalid)
    if type_config.consent_basis == "consent" and not notice.get("voice_consent"):
        return skip(Reason.NO_CUSTOMER_CONSENT)
    try:
        to_e164(notice.get("phone"))
    except InvalidPhoneNumber as exc:
        return skip(exc.reason)
    variables = notice_variables(notice)
    if variables is None:
        return skip(Reason.INVALID_VARIABLES_JSON)
    context = text_context(notice, config, config.confirm_key)
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


def notice_variables(notice: Mapping[str, Any]) -> dict[str, Any] | None:
    """A cleaned notice's template variables (None: not a JSON object)."""
    variables = notice.get("variables")
    if isinstance(variables, str):
        try:
            variables = json.loads(variables)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than sense
            return None
    return variables if isinstance(variables, dict) else None


def text_context(
    notice: Mapping[str, Any], config: CampaignConfig, confirm_key: str
) -> dict[str, str]:
    """What a notice's template says besides its variables: who calls, the keys."""
    type_config = config.notice_types[notice["notice_type"]]
    return {
        "organization": type_config.organization,
        "service_phone": type_config.service_phone,
        "customer_name": notice.get("customer_name") or "",
        "confirm_key": confirm_key,
        "optout_key": config.optout_key,
    }


def decide_all(
    notices: Iterable[Mapping[str, Any]],
    campaign_date: dt.date,
    notice_types: Sequence[str],
    composer: Any,
    config: CampaignConfig,
) -> list[Decision]:
    """Decisions for the notices of this campaign (its types, unknown types, in window)."""
    wanted = set(notice_types)
    debug = log.isEnabledFor(logging.DEBUG)
    decisions = []
    for raw in notices:
        notice = clean_notice(raw)
        if notice["notice_id"] is None:
            log.warning("a notice without a usable id left out: reason=invalid_notice_id")
            continue
        known = notice["notice_type"] in config.notice_types
        if known and notice["notice_type"] not in wanted:
            continue
        if not _in_window(notice, campaign_date, config):
            continue
        decision = _decide(notice, composer, config)
        # DEBUG: a campaign has 100,000 notices; the plan logs a summary per batch instead.
        if debug:
            log.debug(
                "notice %s (%s, %s): %s",
                decision.notice_id,
                escape(decision.notice_type or "<none>", 64),  # CRM data: one field, one line
                mask_phone(notice.get("phone")),
                "planned" if decision.planned else f"skipped reason={decision.reason_code}",
            )
        decisions.append(decision)
    return decisions
