from __future__ import annotations

import subprocess
import sys

from tests.synthesis.text.samples import REPO


def _cli(*args: str, stdin: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "synthesis.text", *args],
        input=stdin.encode("utf-8"),
        capture_output=True,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    return done.stdout.decode("utf-8").splitlines()


def test_normalize_one_line_per_line_and_errors_inline() -> None:
    lines = _cli("normalize", stdin="还款3280.50元\n\n尾号0427😀\n15:30\n")
    assert lines == ["还款三千二百八十元五角", "ERROR empty_input", "ERROR unsupported_characters",
                     "十五点三十分"]  # fmt: skip


def test_normalize_decimal_money_style() -> None:
    assert _cli("normalize", "--money-style", "decimal", stdin="3280.50元\n") == [
        "三千二百八十点五元"
    ]


def test_pinyin_names() -> None:
    lines = _cli("pinyin", "--name", stdin="曾小明\n万俟卨\nJohn\n\n")
    assert lines == ["zēng xiǎo míng", "mò qí xiè", "ERROR invalid_name", "ERROR empty_name"]


def test_pinyin_text_uses_the_lexicon() -> None:
    assert _cli("pinyin", stdin="重庆招行\n") == ["chóng qìng zhāo háng"]


def test_markup_engines() -> None:
    espeak = _cli("markup", "--engine", "espeak", stdin="请按时还款。\n")
    assert espeak == ["cmn-latn-pinyin\tqing3 an4 shi2 huan2 kuan3 ."]
    cosyvoice3 = _cli("markup", "--engine", "cosyvoice3", stdin="请按时还款\n")
    assert cosyvoice3 == ["请按时[h][uán]款"]
    ssml = _cli("markup", "--engine", "ssml", stdin="还款\n\x07\n")
    assert ssml[0].endswith('<phoneme alphabet="x-pinyin" ph="huan2 kuan3">还款</phoneme></speak>')
    assert ssml[1] == "ERROR unsupported_characters"
