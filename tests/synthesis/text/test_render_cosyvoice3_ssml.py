from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from synthesis.text import Segment, TokenInventory, render_cosyvoice3, render_ssml
from synthesis.text.paths import cosyvoice3_tokens_dir
from synthesis.text.render.cosyvoice3 import syllable_tokens
from tests.synthesis.text.samples import ALL_NOTICES, INCLUDE

TOKEN = re.compile(r"\[([^\]]+)\]")


@pytest.fixture(scope="module")
def inventory() -> TokenInventory:
    return TokenInventory.load(cosyvoice3_tokens_dir(), INCLUDE / "lexicons")


def test_surname_becomes_pinyin_tokens(inventory) -> None:
    segment = Segment("曾小明您好，", "cmn", ((0, 3, "zēng xiǎo míng"),))
    assert render_cosyvoice3(segment, inventory).startswith("[z][ēng]小")


@pytest.mark.parametrize(
    ("syllable", "tokens"),
    [("zēng", "[z][ēng]"), ("yù", "[y][ù]"), ("wǒ", "[w][ǒ]"), ("ōu", "[ōu]"),
     ("lüè", "[l][vè]"), ("huán", "[h][uán]"), ("er", None), ("ńg", None)],
)  # fmt: skip
def test_syllable_split_and_fallback(inventory, syllable, tokens) -> None:
    assert syllable_tokens(syllable, inventory) == tokens


def test_unexpressible_reading_keeps_the_character(inventory) -> None:
    segment = Segment("嗯", "cmn", ((0, 1, "ńg"),))
    assert render_cosyvoice3(segment, inventory) == "嗯"


def test_english_word_from_the_cmu_lexicon(inventory) -> None:
    segment = Segment("本通话由AI合成", "cmn")
    assert render_cosyvoice3(segment, inventory) == "本通话由[EY1][AY1]合成"
    for phones in inventory.words.values():
        assert all(phone in inventory.cmu for phone in phones)


def test_every_emitted_token_is_in_the_inventory(composer, context, inventory) -> None:
    names = ["曾小明", "单田芳", "尉迟恭", "万俟卨", "区志强", "解缙", "仇英", "朴树", "乐嘉"]
    emitted = 0
    for name in names:
        for notice_type, variables in ALL_NOTICES.items():
            notice = composer.compose(
                notice_type, "cmn", variables, {**context, "customer_name": name}
            )
            for segment in notice.segments:
                for token in TOKEN.findall(render_cosyvoice3(segment, inventory)):
                    assert token in inventory.pinyin or token in inventory.cmu, token
                    emitted += 1
    assert emitted > 50


def test_english_and_cantonese_pass_through(composer, context, inventory) -> None:
    for locale in ("en", "yue"):
        notice = composer.compose(
            "pension_arrival", locale, ALL_NOTICES["pension_arrival"], context
        )
        for segment in notice.segments:
            assert render_cosyvoice3(segment, inventory) == segment.text


def test_ssml_marks_ambiguous_spans_and_pauses(composer, context) -> None:
    notice = composer.compose(
        "repayment_reminder", "cmn", ALL_NOTICES["repayment_reminder"], context
    )
    greeting = render_ssml(notice.segments[1])
    root = ET.fromstring(greeting)
    phonemes = root.findall("{http://www.w3.org/2001/10/synthesis}phoneme")
    assert phonemes[0].text == "曾小明"
    assert phonemes[0].attrib == {"alphabet": "x-pinyin", "ph": "zeng1 xiao3 ming2"}
    assert greeting.endswith('<break time="400ms"/></speak>')
    assert root.attrib["{http://www.w3.org/XML/1998/namespace}lang"] == "zh-CN"


def test_ssml_escapes_markup_in_text() -> None:
    ssml = render_ssml(Segment("A&B <x>", "en"))
    assert ET.fromstring(ssml).text == "A&B <x>"


def test_only_readings_that_differ_from_the_common_one_become_tokens(composer, inventory) -> None:
    date = Segment(
        "二零二六年十二月三日", "cmn", ((0, 10, "èr líng èr liù nián shí èr yuè sān rì"),)
    )
    assert render_cosyvoice3(date, inventory) == "二零二六年十二月三日"
    city = Segment("重庆", "cmn", composer._words.spans("重庆"))
    assert render_cosyvoice3(city, inventory) == "重庆"
    assert "<phoneme" not in render_ssml(city)
