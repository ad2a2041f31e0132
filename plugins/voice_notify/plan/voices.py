"""Each planned notice's voice: a consenting agent's clone where a valid consent covers it,
else the standard voice (or a skip, where the notice type forbids the fallback)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from synthesis.manifest import VoiceSpec
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.eligibility import Decision

log = logging.getLogger(__name__)


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
