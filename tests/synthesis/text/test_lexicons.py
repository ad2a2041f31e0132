"""The surname and word tables are data; check them against pypinyin's heteronyms."""

from __future__ import annotations

import pytest
from pypinyin import pinyin

from synthesis.text.lexicon import Lexicon, read_tsv
from synthesis.text.pinyin import NameReader, TextReader, WordAnnotator
from tests.synthesis.text.samples import INCLUDE

SURNAMES = read_tsv(INCLUDE / "lexicons" / "surnames.tsv")
WORDS = read_tsv(INCLUDE / "lexicons" / "words.tsv")
CHAR_DEFAULTS = read_tsv(INCLUDE / "lexicons" / "char_defaults.tsv")
REQUIRED = {
    "曾": "zēng", "单": "shàn", "解": "xiè", "仇": "qiú", "查": "zhā", "区": "ōu",
    "尉迟": "yù chí", "万俟": "mò qí", "朴": "piáo", "盖": "gě", "覃": "qín", "种": "chóng",
    "乐": "yuè", "华": "huà", "任": "rén", "缪": "miào", "长孙": "zhǎng sūn",
    "令狐": "líng hú", "欧阳": "ōu yáng", "上官": "shàng guān", "司马": "sī mǎ",
    "诸葛": "zhū gě",
}  # fmt: skip


def test_required_surnames_are_in_the_table() -> None:
    for surname, reading in REQUIRED.items():
        assert SURNAMES[surname] == reading


@pytest.mark.parametrize(
    "table", [SURNAMES, WORDS, CHAR_DEFAULTS], ids=["surnames", "words", "char_defaults"]
)
def test_every_reading_is_one_of_pypinyins_heteronyms(table) -> None:
    for word, reading in table.items():
        syllables = reading.split()
        assert len(syllables) == len(word), word
        for char, syllable in zip(word, syllables, strict=True):
            assert syllable in pinyin(char, heteronym=True)[0], (word, char, syllable)


def test_name_reader_uses_the_table_for_every_surname() -> None:
    reader = NameReader(Lexicon.load(INCLUDE / "lexicons"))
    for surname, reading in SURNAMES.items():
        name = surname + "小明"
        assert reader.read(name)[: len(surname)] == tuple(reading.split()), name


def test_compound_surname_needs_a_given_name() -> None:
    reader = NameReader(Lexicon.load(INCLUDE / "lexicons"))
    assert reader.split("欧阳修") == ("欧阳", "修")
    assert reader.split("欧阳") == ("欧", "阳")
    assert reader.read("单田芳") == ("shàn", "tián", "fāng")


def test_char_defaults_apply_only_outside_known_phrases() -> None:
    reader = TextReader(WordAnnotator(Lexicon.load(INCLUDE / "lexicons")))
    assert reader.read("塞")[0] == "sài"  # alone: the written-language default
    assert reader.read("管道堵塞")[-1] == "sè"  # pypinyin knows the phrase 堵塞
    assert reader.read("欢迎光临重庆")[-2:] == ["chóng", "qìng"]
    assert reader.read("第1名")[1] is None
