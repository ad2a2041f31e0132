"""Dates: 2026-12-03 -> 二零二六年十二月三日; years digit by digit, month and day as numbers.

Numeric dates in every common separator order (Y-M-D, D/M/Y or M/D/Y, Y-M, M-Y, zero-padded
M-D, YY/M/D) with ``-``, ``/``, ``.`` or ``·``; dates in 年月日 form; years (2008年 ->
二零零八年, but 20年后 -> 二十年后), decades (90年代 -> 九十年代, 90后 -> 九零后), AD/BC and
event dates (5·12 -> 五一二), as GB/T 15835-2011 writes them.
"""

from __future__ import annotations

import datetime as dt
import re

from synthesis.text.normalize.cardinal import cardinal, count
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


def _ymd(year: str, month: str, day: str | None = None) -> str:
    text = f"{digits(year)}年{cardinal(month)}月"
    return text + f"{cardinal(day)}日" if day else text


def _valid(month: str, day: str | None = None) -> bool:
    return 1 <= int(month) <= 12 and (day is None or 1 <= int(day) <= 31)


# Boundaries: no digit, separator or decimal point may touch a numeric date on either side.
_L = r"(?<![\d.:/·])(?<!\d-)"
_R = r"(?![\d]|[.:/\-·]\d)"
_YEAR4 = r"(1\d{3}|20\d{2})"
_SEP = r"([-/.·])"
_FULL = re.compile(_L + _YEAR4 + _SEP + r"(\d{1,2})\2(\d{1,2})" + _R)
_DAY_FIRST = re.compile(_L + r"(\d{1,2})" + _SEP + r"(\d{1,2})\2" + _YEAR4 + _R)
_SHORT = re.compile(_L + r"(\d{2})([/.])(\d{1,2})\2(\d{1,2})" + _R)
_YEAR_MONTH = re.compile(_L + _YEAR4 + r"(?:([-/])(\d{1,2})|\.(\d{2}))" + _R)
_MONTH_YEAR = re.compile(_L + r"(0[1-9]|1[0-2])[-/.]" + _YEAR4 + _R)
_MONTH_DAY = re.compile(
    _L + r"(?:(0[1-9])([-/.])(0[1-9]|[12]\d|3[01])|(1[0-2])([-/.])(0[1-9]))" + _R
)
_EVENT = re.compile(_L + r"(\d{1,2})·(\d{1,2})" + _R)
_ERA = re.compile(
    r"(?<![\d.])(\d{1,4})(年(?:\d{1,2}月(?:\d{1,2}[日号])?)?)?\s?(a\.d\.|ad|b\.c\.|bc)(?![A-Za-z])",
    re.IGNORECASE,
)
_ERA_YEAR = re.compile(r"(公元前|公元|纪元前|纪元|西元)(\d{1,4})年")
#: After a year number, words that make it a duration (20年后, 2000年前 is ambiguous).
_DURATION = (
    r"(?:后|前|内|间|来|里|多|余|半|左右|以上|以下|以内|以来|之久|之后|之前|期间|的时间|时间)"
)
_YEAR_CONTEXT = r"(?:于|在|从|自|至|到|是|生于|出生|毕业|始于|截至)"
_YEAR_4 = re.compile(r"(?<![\d.])(\d{4})年(?!代)(" + _DURATION + ")?")
_YEAR_2 = re.compile(r"(" + _YEAR_CONTEXT + r")?(?<![\d.])(\d{2})年(?!代)")
_AFTER_YEAR_2 = re.compile(r"(\d{1,2}月)|(" + _DURATION + ")")
_YEAR_RANGE = re.compile(r"(?<![\d.])(\d{4})(\s?[~～—–\-至到]\s?)(?=\d{4}年)")
_DECADE = re.compile(r"(?<![\d.])(\d{2}|\d{4})年代")
_GENERATION = re.compile(r"(?<![\d.])(\d[05])后(?![\d年月天日时分秒])")
_MONTH = re.compile(r"(?<![\d.])(0?[1-9]|1[0-2])月")
_DAY = re.compile(r"(?<![\d.])(0?[1-9]|[12]\d|3[01])([日号])")


def _full(match: re.Match[str]) -> str:
    year, _, month, day = match.groups()
    return _ymd(year, month, day) if _valid(month, day) else match.group()


def _day_first(match: re.Match[str]) -> str:
    first, _, second, year = match.groups()
    if int(first) > 12 and _valid(second, first):
        return _ymd(year, second, first)
    if _valid(first, second):
        return _ymd(year, first, second)
    return match.group()


def _short(match: re.Match[str]) -> str:
    year, _, month, day = match.groups()
    return _ymd(year, month, day) if _valid(month, day) else match.group()


def _year_month(match: re.Match[str]) -> str:
    year, _, month, dotted = match.groups()
    month = month or dotted
    return _ymd(year, month) if _valid(month) else match.group()


def _era(match: re.Match[str]) -> str:
    year, rest, era = match.groups()
    prefix = "公元前" if era.lower().startswith("b") else "公元"
    return f"{prefix}{digits(year)}年{(rest or '年')[1:]}"


def _month_day(match: re.Match[str]) -> str:
    month, _, day = match.groups()[:3] if match.group(1) else match.groups()[3:]
    return f"{cardinal(month)}月{cardinal(day)}日"


def _year_4(match: re.Match[str]) -> str:
    number, duration = match.groups()
    if duration and (duration[0] in "多余来半左以之期的时" or number.endswith("000")):
        return count(number) + "年" + duration
    return digits(number) + "年" + (duration or "")


def _year_2(match: re.Match[str]) -> str:
    context, number = match.groups()
    after = _AFTER_YEAR_2.match(match.string, match.end())
    month, duration = after.groups() if after else (None, None)
    standalone = match.end() == len(match.string)
    as_year = number[0] == "0" or month or standalone or (context and not duration)
    return (context or "") + (digits(number) if as_year else cardinal(number)) + "年"


def _decade(match: re.Match[str]) -> str:
    number = match.group(1)
    return (cardinal(number) if len(number) == 2 else digits(number)) + "年代"


def apply(text: str) -> str:
    """Free-text rule: numeric dates, years, decades, months, days before 日/号, AD/BC."""
    text = _FULL.sub(_full, text)
    text = _DAY_FIRST.sub(_day_first, text)
    text = _SHORT.sub(_short, text)
    text = _YEAR_MONTH.sub(_year_month, text)
    text = _MONTH_YEAR.sub(lambda m: _ymd(m.group(2), m.group(1)), text)
    text = _MONTH_DAY.sub(_month_day, text)
    text = _EVENT.sub(
        lambda m: digits(m.group(1) + m.group(2)) if _valid(*m.groups()) else m.group(), text
    )
    text = _ERA.sub(_era, text)
    text = _ERA_YEAR.sub(lambda m: f"{m.group(1)}{digits(m.group(2))}年", text)
    text = _DECADE.sub(_decade, text)
    text = _GENERATION.sub(lambda m: digits(m.group(1)) + "后", text)
    text = _YEAR_RANGE.sub(
        lambda m: digits(m.group(1)) + ("至" if "至" in m.group(2) else "到"), text
    )
    text = _YEAR_4.sub(_year_4, text)
    text = _YEAR_2.sub(_year_2, text)
    text = _MONTH.sub(lambda m: cardinal(m.group(1)) + "月", text)
    return _DAY.sub(lambda m: cardinal(m.group(1)) + m.group(2), text)
