"""Measures: 25kg -> 二十五千克, 38°C -> 三十八摄氏度, 120m² -> 一百二十平方米."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import cardinal
from synthesis.text.normalize.decimal import decimal

#: Unit symbol -> spoken unit. Longer symbols first so ``cm²`` wins over ``cm`` and ``m``.
UNITS = {
    "km²": "平方千米",
    "cm²": "平方厘米",
    "m²": "平方米",
    "m³": "立方米",
    "°C": "摄氏度",
    "℃": "摄氏度",
    "°F": "华氏度",
    "kg": "千克",
    "km": "千米",
    "cm": "厘米",
    "mm": "毫米",
    "ms": "毫秒",
    "ml": "毫升",
    "mg": "毫克",
    "KB": "千字节",
    "MB": "兆字节",
    "GB": "吉字节",
    "KG": "千克",
    "CM": "厘米",
    "g": "克",
    "m": "米",
    "s": "秒",
    "l": "升",
    "h": "小时",
}
_MEASURE = re.compile(
    r"(?<![\d.A-Za-z])([-－]?\d+(?:\.\d+)?)\s?("
    + "|".join(re.escape(unit) for unit in UNITS)
    + r")(?![A-Za-z²³])"
)


def _measure(match: re.Match[str]) -> str:
    number, unit = match.groups()
    spoken = UNITS[unit]
    reading = decimal(number) if "." in number else None
    if reading is None:
        reading = ("负" if number[0] in "-－" else "") + cardinal(number.lstrip("-－"))
    return reading + spoken


def apply(text: str) -> str:
    """Free-text rule: a number followed by a unit symbol (case matters: 5G is not 5 g)."""
    return _MEASURE.sub(_measure, text)
