"""Cardinal numbers: 51110 -> 五万一千一百一十; bare numbers in text; 两/二 conventions."""

from __future__ import annotations

import re

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_SECTION_UNITS = ("", "万", "亿", "万亿")

#: The longest integer read as a quantity; longer digit runs are read digit by digit.
MAX_CARDINAL_DIGITS = 16


def _section(four: str) -> str:
    """Read a section of up to four digits (no leading-zero handling)."""
    out: list[str] = []
    zero_pending = False
    width = len(four)
    for index, char in enumerate(four):
        value = int(char)
        unit = _SMALL_UNITS[width - 1 - index]
        if value == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(DIGITS[value] + unit)
    return "".join(out)


def cardinal(number: str | int) -> str:
    """Read a non-negative integer: ``10010000`` -> ``一千零一万``; ``10`` -> ``十``."""
    digits = str(number).lstrip("0") or "0"
    if not digits.isdigit() or len(digits) > MAX_CARDINAL_DIGITS:
        raise ValueError(f"not a cardinal: {number!r}")
    if digits == "0":
        return "零"
    sections: list[str] = []
    while digits:
        sections.insert(0, digits[-4:])
        digits = digits[:-4]
    out: list[str] = []
    need_zero = False
    last = len(sections) - 1
    for index, section in enumerate(sections):
        if int(section) == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or section[0] == "0"):
            out.append("零")
        out.append(_section(section.lstrip("0")) + _SECTION_UNITS[last - index])
        need_zero = False
    text = "".join(out)
    return text[1:] if text.startswith("一十") else text


def count(number: str | int, *, measure_word: str = "") -> str:
    """Read a quantity before a measure word: 2 -> 两 (两个, 两千), 12 -> 十二, 2000 -> 两千."""
    text = cardinal(number)
    if text == "二" or (len(text) > 1 and text[0] == "二" and text[1] in "千万亿"):
        text = "两" + text[1:]
    return text + measure_word


def signed(number: str) -> str:
    """Read an integer with an optional sign: ``-5`` -> ``负五``."""
    if number[:1] in "-－负":
        return "负" + cardinal(number[1:])
    return cardinal(number.lstrip("+"))


# A bare integer in running text. Digit runs that look like identifiers are left to
# ``digits.py`` (which runs earlier); what reaches this rule is read as a quantity.
_BARE = re.compile(r"(?<![\d.])([-－]?)(\d+)(?![\d.]\d)")


def _bare(match: re.Match[str]) -> str:
    sign, digits = match.groups()
    if len(digits) > MAX_CARDINAL_DIGITS or (len(digits) > 1 and digits[0] == "0"):
        return ("负" if sign else "") + "".join(DIGITS[int(d)] for d in digits)
    return ("负" if sign else "") + cardinal(digits)


def apply(text: str) -> str:
    """Free-text rule: every remaining integer becomes a cardinal."""
    return _BARE.sub(_bare, text)
