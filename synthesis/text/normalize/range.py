"""Ranges: 12~23, 12-23 and 2010—2012年 -> 到 between the two ends; the ends are read later.

Runs after dates, times, identifiers, math and scores, so a ``-`` still between two numbers
here is a range mark. Each end is then read by its own rule (3%~5% -> 百分之三到百分之五,
10-20km -> 十到二十千米, 8:00-9:00 -> 八点到九点).
"""

from __future__ import annotations

import re

_END_CHARS = "年月日号点分秒时元万亿度%‰"
_START_CHARS = "零一二三四五六七八九十两负"
_RANGE = re.compile(
    r"(?<=[\d" + _END_CHARS + r"])\s?(?:[~～—–]|-(?!-))\s?(?=[-－负]?\d|[" + _START_CHARS + "])"
)


# A range's second end on its own (-2010.10, the rest of a split range): 到 before a date or
# a time already read.
_OPEN_END = re.compile(
    r"(?:^|(?<=\s))[-~～]\s?(?=(?:上午|下午)?[" + _START_CHARS + r"]{1,4}[年点])"
)


def apply(text: str) -> str:
    """Free-text rule: a range mark between two numbers becomes 到."""
    text = _OPEN_END.sub("到", text)
    return _RANGE.sub("到", text)
