"""Each planned notice's voice: a consenting agent's clone where a valid consent covers it,
else the standard voice (or a skip, where the notice type forbids the fallback)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from synthesis.manifest import VoiceSpec
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.eligibility import Decision

log = logging.getLogger(__name__)


def customer_age(notice: Mapping[str, Any], on: dt.date) -> int | None:
    """The customer's age in years on a date, from the CRM's ``birth_date`` (a date or
    ISO text) or, failing that, ``birth_year``; None when the CRM has neither or it is
    unusable."""
    born = notice.get("birth_date")
    try:
        if isinstance(born, str) and born:
            born = dt.date.fromisoformat(born[:10])
        if isinstance(born, dt.date):
            return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        year = notice.get("birth_year")
        return on.year - int(year) if year not in (None, "") else None
    except (TypeError, ValueError):
        return None


def customer_ages(notices: Iterable[Mapping[str, Any]], on: dt.date) -> dict[int, int | None]:
    """``{notice_id: age on the date}`` for the notices whose CRM row has a birth date."""
    return {n["notice_id"]: customer_age(n, on) for n in notices}


def assign_voices(
    decisions: Sequence[Decision],
    book: Any,
    config: CampaignConfig,
    on: dt.date,
    ages: Mapping[int, int | None] | None = None,
) -> list[Decision]:
    """Choose each planned notice's voice: a cloned agent voice only under a valid consent,
    speaking the emotion variant the campaign file's ``tone`` names for the notice type
    and the customer's age band (``ages``: by notice id), if the voice enrolled it.

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
    ages = ages or {}
    debug = log.isEnabledFor(logging.DEBUG)
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
            emotion, rule = _tone(decision, book, config, consent.profile_id, ages)
            variant = None if emotion == "normal" else emotion  # normal: prompt.wav
            voice = VoiceSpec(consent.profile_id, instruct, variant)
            chosen.append(replace(decision, voice=voice, consent=consent, tone_rule=rule))
        elif config.notice_types[decision.notice_type].standard_voice_fallback:
            # The refusal stays on the decision for the trail; no consent is relied on.
            voice = VoiceSpec("standard", instruct)
            chosen.append(replace(decision, voice=voice, consent=consent))
        else:
            chosen.append(replace(decision, reason_code=consent.reason_code, consent=consent))
        if debug:
            log.debug(
                "notice %s: voice %s (%s)",
                decision.notice_id,
                chosen[-1].voice.profile if chosen[-1].planned else "-",
                "consent " + str(consent.consent_id) if consent.allowed else consent.reason_code,
            )
    return chosen


def _tone(
    decision: Decision,
    book: Any,
    config: CampaignConfig,
    profile_id: str,
    ages: Mapping[int, int | None],
) -> tuple[str, str]:
    """The variant for a cloned voice and the rule that chose it; normal where the chosen
    variant is not enrolled for the profile."""
    emotion, rule = config.tone_for(decision.notice_type, ages.get(decision.notice_id))
    if emotion != "normal" and emotion not in book.variants_of(profile_id):
        return "normal", f"{rule}; {emotion} not enrolled"[:64]
    return emotion, rule[:64]


# CRM dialect names that differ from the instruct catalogue's keys.
_DIALECT_INSTRUCTS = {"cantonese": "guangdong"}
