"""Percentages: 30.6% -> 百分之三十点六; -98% -> 负百分之九十八; 3~5% -> 百分之三到五; ‰."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import SIGN_LOOKBEHIND
from synthesis.text.normalize.decimal import NUMBER, decimal

_PER = {"%": "百分之", "％": "百分之", "‰": "千分之", "‱": "万分之"}


def percent(number: str, per: str = "百分之") -> str:
    """Read a percentage value (without the sign ``%``); trailing decimal zeros are dropped."""
    negative = number[:1] in "-－负"
    body = (number[1:] if negative else number).replace(",", "")
    if "." in body:
        body = body.rstrip("0").rstrip(".")
    return ("负" if negative else "") + per + decimal(body)


_SIGN = r"(?:" + SIGN_LOOKBEHIND + r"([-－]))?(?<![\d.])(负)?"
_SPAN = re.compile(_SIGN + r"(" + NUMBER + r")到(" + NUMBER + r")\s?([%％‰‱])")
_PERCENT = re.compile(_SIGN + r"(" + NUMBER + r")\s?([%％‰‱])")
_WRITTEN = re.compile(r"(?<![\d.])([-－负]?)百分之(\d++(?:\.\d++)?)")


def _percent(match: re.Match[str]) -> str:
    sign = "-" if match.group(1) or match.group(2) else ""
    return percent(sign + match.group(3), _PER[match.group(4)])


def _span(match: re.Match[str]) -> str:
    sign = "负" if match.group(1) or match.group(2) else ""
    low, high, per = match.group(3), match.group(4), _PER[match.group(5)]
    return sign + percent(low, per) + "到" + percent(high, per).removeprefix(per)


def apply(text: str) -> str:
    """Free-text rule: ``N%``, ``a到b%`` (after ``range.py``), ``N‰`` and ``百分之N``."""
    text = _SPAN.sub(_span, text)
    text = _PERCENT.sub(_percent, text)
    return _WRITTEN.sub(lambda m: ("负" if m.group(1) else "") + percent(m.group(2)), text)
