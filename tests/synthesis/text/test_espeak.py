from __future__ import annotations

import subprocess

import pytest

from synthesis.text import Segment, render_espeak
from tests.synthesis.text.samples import ALL_NOTICES, REPAYMENT


def test_name_greeting_in_tone_numbered_pinyin() -> None:
    segment = Segment("曾小明您好，", "cmn", ((0, 3, "zēng xiǎo míng"),))
    assert render_espeak(segment) == ("cmn-latn-pinyin", "zeng1 xiao3 ming2 nin2 hao3 ,")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请按时还款。", "qing3 an4 shi2 huan2 kuan3 ."),
        ("重庆招行行长", "chong2 qing4 zhao1 hang2 hang2 zhang3"),
        ("女士", "nv3 shi4"),
    ],
)
def test_lexicon_words_through_the_composer_annotator(composer, text, expected) -> None:
    spans = composer._words.spans(text)  # the annotator the composer applies to literals
    assert render_espeak(Segment(text, "cmn", spans))[1] == expected


def test_mandarin_markup_has_only_pinyin_and_pauses(composer, context) -> None:
    for notice_type, variables in ALL_NOTICES.items():
        for segment in composer.compose(notice_type, "cmn", variables, context).segments:
            voice, markup = render_espeak(segment)
            assert voice == "cmn-latn-pinyin"
            for token in markup.split():
                assert token in {",", "."} or (token[:-1].isalpha() and token[-1] in "12345")


def test_letters_in_codes_are_spelled(composer, context) -> None:
    policy = ALL_NOTICES["policy_renewal"]
    segment = composer.compose("policy_renewal", "cmn", policy, context).segments[2]
    markup = render_espeak(segment)[1]
    assert "bao3 dan1 pi4 er4 ling2 er4 liu4 ei1 ling2 ba1 yao1 wu3" in markup


def test_cantonese_and_english_voices(composer, context) -> None:
    yue = composer.compose("repayment_reminder", "yue", REPAYMENT, context).segments[0]
    assert render_espeak(yue) == ("yue", "本通話語音由人工智能合成。")
    en = composer.compose("repayment_reminder", "en", REPAYMENT, context).segments[0]
    assert render_espeak(en) == ("en-us", en.text)


@pytest.mark.integration
def test_espeak_ng_accepts_the_markup(composer, context, tmp_path) -> None:
    segment = composer.compose("repayment_reminder", "cmn", REPAYMENT, context).segments[1]
    voice, markup = render_espeak(segment)
    wav = tmp_path / "greeting.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), markup], check=True, timeout=30)
    assert wav.stat().st_size > 10_000
