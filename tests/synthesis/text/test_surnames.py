"""Surnames in surname mode: the golden file of single and compound surnames and readings."""

from __future__ import annotations

import pytest
from pypinyin import pinyin

from synthesis.text.eval import evaluate_surnames, golden_pairs
from synthesis.text.lexicon import Lexicon
from synthesis.text.pinyin import NameReader
from tests.synthesis.text.samples import DATA, INCLUDE

GOLDEN = golden_pairs(DATA / "surnames.txt")
READER = NameReader(Lexicon.load(INCLUDE / "lexicons"))
TONE_MARKS = set("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ")


def test_the_golden_file_covers_the_baijiaxing_and_rarer_surnames() -> None:
    surnames = dict(GOLDEN)
    assert len(surnames) >= 500
    assert sum(len(surname) > 1 for surname in surnames) >= 60
    for surname in ("赵", "钱", "孙", "李", "甯", "六", "要", "撒", "子车", "段干", "宰父"):
        assert surname in surnames


@pytest.mark.parametrize(("surname", "reading"), GOLDEN, ids=[s for s, _ in GOLDEN])
def test_surname_reading(surname: str, reading: str) -> None:
    assert READER.read(surname + "明华")[: len(surname)] == tuple(reading.split())
    for char, syllable in zip(surname, reading.split(), strict=True):
        assert syllable in pinyin(char, heteronym=True)[0], (char, syllable)
        assert TONE_MARKS & set(syllable), syllable


def test_surname_accuracy_is_at_least_99_percent() -> None:
    ours, _ = evaluate_surnames(DATA / "surnames.txt")
    assert ours.percent >= 99.0, ours.misses[:10]


@pytest.mark.parametrize(
    ("name", "reading"),
    [("子车明", "zǐ jū míng"), ("王东西", "wáng dōng xī"), ("爱新觉罗溥仪", "ài xīn jué luó pǔ yí"),
     ("欧阳", "ōu yáng"), ("单于", "shàn yú"), ("单于明", "chán yú míng")],
)  # fmt: skip
def test_every_syllable_of_a_name_carries_its_tone(name: str, reading: str) -> None:
    assert " ".join(READER.read(name)) == reading
