"""Scores and ratios: 中国1-2 -> 中国一比二, 爆冷0:1 -> 爆冷零比一, 1:1000 -> 一比一千.

Runs after ``time.py``: a ``N:M`` still here is not a clock time, so it is a ratio. A
``N-M`` is a score only after a name (a Han character other than 第, 约 ...) and when no
measure word follows; otherwise it is a range.
"""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import MEASURE_WORDS, cardinal

_RATIO = re.compile(r"(?<![\d.:])(\d{1,6})\s?[:：]\s?(\d{1,6})(?![\d:])")
_SCORE = re.compile(
    r"(?<=[\u4e00-\u9fff])(?<![第约共近超逾每])\s?(\d{1,3})\s?-\s?(\d{1,3})"
    r"(?![\d.\-]|\s?[" + MEASURE_WORDS + r"万亿%A-Za-z])"
)


# A result after a team name and a space, with a slash: 拉齐奥 2/2 (a fraction has no space).
_SLASH_SCORE = re.compile(r"(?<=[\u4e00-\u9fff])\s(\d{1,2})/(\d{1,2})(?=$|[\s,，。;；!！?？])")


def _score(match: re.Match[str]) -> str:
    return cardinal(match.group(1)) + "比" + cardinal(match.group(2))


def apply(text: str) -> str:
    """Free-text rule: ratios with ``:`` and scores with ``-`` after a team name."""
    text = _RATIO.sub(_score, text)
    text = _SLASH_SCORE.sub(_score, text)
    return _SCORE.sub(_score, text)
