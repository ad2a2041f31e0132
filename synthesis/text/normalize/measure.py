"""Measures: 25kg -> 二十五千克, 120m² -> 一百二十平方米, 10km/h -> 每小时十公里.

Units are data (include/lexicons/units.tsv): symbol, reading, and the reading as the
denominator's partner in a rate where usage differs (km/h is 公里 per hour, not 千米).
"""

from __future__ import annotations

import re

from synthesis.text.lexicon import read_tsv_rows
from synthesis.text.normalize.cardinal import SIGN_LOOKBEHIND
from synthesis.text.normalize.decimal import NUMBER, number
from synthesis.text.paths import INCLUDE_DIR

_ROWS = read_tsv_rows(INCLUDE_DIR / "lexicons" / "units.tsv")
#: Unit symbol -> spoken unit.
UNITS = {row[0]: row[1] for row in _ROWS}
#: Unit symbol -> spoken unit in a rate (10km/h -> 每小时十公里), when it differs.
RATE_UNITS = {row[0]: row[2] for row in _ROWS if len(row) > 2}
#: Units written in Chinese that may stand on either side of a rate's slash (5元/月).
HAN_UNITS = (
    "平方米|平米|公里|千米|公斤|千克|小时|分钟|人次|美元|元|块|米|克|斤|吨|升|天|月|年|周|人|次|"
    "个|件|台|辆|张|份|瓶|盒|页|秒|度|户|间|股|手"
)
_SYMBOLS = "|".join(re.escape(unit) for unit in sorted(UNITS, key=len, reverse=True))
_UNIT = r"(" + _SYMBOLS + r")(?![A-Za-z²³\d])"
_SIGNED = (
    r"(?:"
    + SIGN_LOOKBEHIND
    + r"([-－]))?(?<![\d.A-Za-z])("
    + NUMBER
    + r"(?:到"
    + NUMBER
    + r")?)\s?"
)
_RATE = re.compile(
    _SIGNED
    + r"(?:([万亿])("
    + _SYMBOLS
    + "|"
    + HAN_UNITS
    + r")?|("
    + _SYMBOLS
    + "|"
    + HAN_UNITS
    + r"))\s?/\s?("
    + _SYMBOLS
    + "|"
    + HAN_UNITS
    + r")(?![A-Za-z²³\d])"
)
_MEASURE = re.compile(_SIGNED + _UNIT)


def _value(text: str) -> str:
    """A number, or a range of two (10到20) as range.py left it."""
    return "到".join(number(part) for part in text.split("到"))


def _spoken(unit: str, *, rate: bool = False) -> str:
    if rate and unit in RATE_UNITS:
        return RATE_UNITS[unit]
    return UNITS.get(unit, unit)


def _rate(match: re.Match[str]) -> str:
    sign, value, scale, scaled_unit, unit, per = match.groups()
    reading = ("负" if sign else "") + _value(value) + (scale or "")
    unit = unit or scaled_unit
    return "每" + _spoken(per) + reading + (_spoken(unit, rate=True) if unit else "")


def _measure(match: re.Match[str]) -> str:
    sign, value, unit = match.groups()
    return ("负" if sign else "") + _value(value) + UNITS[unit]


def apply(text: str) -> str:
    """Free-text rule: a number and a unit symbol (case matters: 5G is not 5 g), and rates."""
    text = _RATE.sub(_rate, text)
    return _MEASURE.sub(_measure, text)
