"""Dates: 2026-12-03 -> 二零二六年十二月三日; years digit by digit, month and day as numbers."""

from __future__ import annotations

import datetime as dt
import re

from synthesis.text.normalize.cardinal import cardinal
from synthesis.text.normalize.digits import digits

_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")


def parse_date(value: object) -> dt.date:
    """Parse a CRM date (``"2026-12-03"``, ``"2026/12/3"`` or a ``date``).

    :raises ValueError: not a valid calendar date.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    match = _ISO.match(str(value).strip())
    if not match:
        raise ValueError(f"not a date: {value!r}")
    year, month, day = (int(group) for group in match.groups())
    return dt.date(year, month, day)


def date(day: dt.date) -> str:
    """Read a calendar date in Chinese."""
    return f"{digits(str(day.year))}年{cardinal(day.month)}月{cardinal(day.day)}日"


def _ymd(year: str, month: str, day: str) -> str:
    return f"{digits(year)}年{cardinal(month)}月{cardinal(day)}日"


_FULL = re.compile(r"(?<![\d.])(\d{4})([-/.·])(\d{1,2})\2(\d{1,2})(?![\d.])")
_SHORT = re.compile(r"(?<![\d./])(\d{2})([/.])(\d{1,2})\2(\d{1,2})(?![\d./])")
_ERA = re.compile(r"(?<!\d)(\d{1,4})\s?(a\.d\.|ad|b\.c\.|bc)(?![a-z])", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\d.])(\d{2}|\d{4})(年)")
_ERA_YEAR = re.compile(r"(公元前|公元|纪元|西元)(\d{1,4})年")
_ERA_AFTER = re.compile(r"(\S*年\S*?)(bc|b\.c\.)$", re.IGNORECASE)
_MONTH = re.compile(r"(?<![\d.])(0?[1-9]|1[0-2])月")
_DAY = re.compile(r"(?<![\d.])(0?[1-9]|[12]\d|3[01])([日号])")


def _era(match: re.Match[str]) -> str:
    prefix = "公元前" if match.group(2).lower().startswith("b") else "公元"
    return f"{prefix}{digits(match.group(1))}年"


def apply(text: str) -> str:
    """Free-text rule: numeric dates, years before 年, months, days before 日/号, AD/BC."""
    text = _FULL.sub(lambda m: _ymd(m.group(1), m.group(3), m.group(4)), text)
    text = _SHORT.sub(lambda m: _ymd(m.group(1), m.group(3), m.group(4)), text)
    text = _ERA.sub(_era, text)
    if _ERA_AFTER.search(text):
        text = "公元前" + _ERA_AFTER.sub(r"\1", text)
    text = _ERA_YEAR.sub(lambda m: f"{m.group(1)}{digits(m.group(2))}年", text)
    text = _YEAR.sub(lambda m: digits(m.group(1)) + m.group(2), text)
    text = _MONTH.sub(lambda m: cardinal(m.group(1)) + "月", text)
    return _DAY.sub(lambda m: cardinal(m.group(1)) + m.group(2), text)
