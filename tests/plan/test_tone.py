"""Tone: the enrolled emotion variant by notice type and age band, as the campaign file says."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from synthesis.manifest import BatchItem, VoiceSpec, audio_key
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.plan.voices import customer_age

DAY = dt.date(2026, 11, 26)
CONFIG = load_campaign_config(Path(__file__).resolve().parents[2] / "include" / "campaigns.yaml")


@pytest.mark.parametrize(
    ("notice_type", "age", "emotion", "rule"),
    [
        ("repayment_reminder", 40, "serious", "repayment_reminder: default"),
        ("repayment_reminder", 70, "warm", "repayment_reminder: senior"),
        ("repayment_reminder", None, "serious", "repayment_reminder: default"),
        ("pension_arrival", 80, "warm", "pension_arrival: default"),
        ("policy_renewal", 30, "normal", "policy_renewal: default"),
    ],
)
def test_tone_by_notice_type_and_age_band(notice_type, age, emotion, rule) -> None:
    assert CONFIG.tone_for(notice_type, age) == (emotion, rule)


def test_age_from_birth_date_or_year() -> None:
    assert customer_age({"birth_date": "1961-11-27"}, DAY) == 64  # birthday tomorrow
    assert customer_age({"birth_date": dt.date(1961, 11, 26)}, DAY) == 65
    assert customer_age({"birth_year": 1950}, DAY) == 76
    assert customer_age({"birth_year": "not a year"}, DAY) is None
    assert customer_age({}, DAY) is None


def test_the_normal_variant_keeps_its_audio_keys() -> None:
    item = BatchItem(1, 1, "2026-11-26", "repayment_reminder", "cmn", [{"text": "x"}])
    warm = BatchItem(1, 1, "2026-11-26", "repayment_reminder", "cmn", [{"text": "x"}],
                     voice=VoiceSpec("standard", None, "warm"))  # fmt: skip
    # The key of an item without a variant is what it was before variants existed.
    material = json.dumps(
        {"engine": "e", "voice": {"profile": "standard", "instruct": None}, "seed": 0,
         "segments": [{"text": "x"}]},
        ensure_ascii=False, sort_keys=True,
    )  # fmt: skip
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
    assert audio_key("e", item) == f"audio/{digest[:2]}/{digest}.wav"
    assert audio_key("e", warm) != audio_key("e", item)


def test_a_tone_naming_an_unknown_variant_or_band_is_refused(tmp_path) -> None:
    text = (Path(__file__).resolve().parents[2] / "include" / "campaigns.yaml").read_text()
    bad = tmp_path / "campaigns.yaml"
    bad.write_text(text.replace("{default: serious, senior: warm}", "{default: cheerful}"))
    with pytest.raises(ValueError, match="cheerful"):
        load_campaign_config(bad)
    bad.write_text(text.replace("{default: serious, senior: warm}", "{toddler: warm}"))
    with pytest.raises(ValueError, match="toddler"):
        load_campaign_config(bad)
