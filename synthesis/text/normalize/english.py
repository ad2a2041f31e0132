"""English readings for the ``en`` locale: numbers, money, dates, times, digit strings."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from synthesis.text.errors import NoticeTextError

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}  # fmt: skip


def cardinal_en(number: int) -> str:
    """``3280`` -> ``three thousand two hundred eighty``."""
    if number < 0:
        return "minus " + cardinal_en(-number)
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal_en(rest)}" if rest else "")
    for scale, word in _SCALES:
        if number >= scale:
            high, rest = divmod(number, scale)
            return f"{cardinal_en(high)} {word}" + (f" {cardinal_en(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal_en(number: int) -> str:
    """``3`` -> ``third``; ``21`` -> ``twenty-first``."""
    words = cardinal_en(number)
    head, sep, last = words.rpartition("-") if "-" in words else ("", "", words)
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def digits_en(text: str) -> str:
    """Read digits one by one, letters kept: ``P2026`` -> ``P two zero two six``."""
    return " ".join(_ONES[int(char)] if char.isdigit() else char for char in text if char.strip())


def money_en(amount: Decimal, style: str = "yuan-jiao-fen") -> str:
    """``3280.50`` -> ``three thousand two hundred eighty yuan and fifty fen``."""
    yuan, cents = divmod(int(amount * 100), 100)
    if style == "decimal" and cents:
        fraction = f"{cents:02d}".rstrip("0")
        return f"{cardinal_en(yuan)} point {digits_en(fraction)} yuan"
    text = f"{cardinal_en(yuan)} yuan" if yuan or not cents else ""
    if cents:
        text += (" and " if text else "") + f"{cardinal_en(cents)} fen"
    return text


def year_en(year: int) -> str:
    """``2026`` -> ``twenty twenty-six``; ``2000`` -> ``two thousand``; ``2005`` too."""
    high, low = divmod(year, 100)
    if low == 0 or (high % 10 == 0 and low < 10):
        return cardinal_en(year)
    return f"{cardinal_en(high)} {'oh ' if low < 10 else ''}{cardinal_en(low)}"


def date_en(day: dt.date) -> str:
    """``2026-12-03`` -> ``December third, twenty twenty-six``."""
    return f"{_MONTHS[day.month - 1]} {ordinal_en(day.day)}, {year_en(day.year)}"


def time_en(hour: int, minute: int) -> str:
    """``15:30`` -> ``three thirty PM``; ``09:05`` -> ``nine oh five AM``."""
    if (hour, minute) == (12, 0):
        return "twelve noon"
    suffix = "AM" if hour < 12 else "PM"
    spoken_hour = hour % 12 or 12
    if minute == 0:
        return f"{cardinal_en(spoken_hour)} o'clock {suffix}"
    minutes = cardinal_en(minute) if minute >= 10 else f"oh {cardinal_en(minute)}"
    return f"{cardinal_en(spoken_hour)} {minutes} {suffix}"


_NUMBER = re.compile(r"(?<![0-9])(?:([0-9]++)(?:\.([0-9]++))?|(?<![0-9A-Za-z.])\.([0-9]++))(%?)")
#: Symbols English speech reads; any other symbol (brackets, |, ^ ...) is dropped.
_SYMBOL_WORDS = {
    "%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ",
    "#": " number ", "$": " dollars ", "€": " euros ", "£": " pounds ", "¥": " yuan ",
    "￥": " yuan ", "/": " ", "*": " star ", "<": " less than ", ">": " greater than ",
}  # fmt: skip
# Letters of any script stay (the segment check refuses the ones no engine reads).
_UNREAD = re.compile(r"[^\w\s,.!?;:'\"()\-]|_")
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")


def _number(match: re.Match[str]) -> str:
    whole, frac, leading_point, percent = match.groups()
    frac = frac or leading_point
    whole = whole or "0"
    text = cardinal_en(int(whole)) if len(whole) <= 12 else digits_en(whole)
    if frac:
        text += " point " + digits_en(frac)
    return text + (" percent" if percent else "")


#: Symbols English speech skips (separators and brackets): read as a space.
_SKIPPED = frozenset("[]{}|\\^`~_")


def _symbol(match: re.Match[str], errors: str) -> str:
    char = match.group()
    if char in _SYMBOL_WORDS:
        return _SYMBOL_WORDS[char]
    if char in _SKIPPED or errors == "ignore":
        return " "
    raise NoticeTextError("unspeakable_text", f"no English reading for U+{ord(char):04X}")


def normalize_en(text: str, errors: str = "ignore") -> str:
    """English free text: numbers become words, symbols words or nothing (never left).

    :param errors: a symbol with no reading is dropped (``"ignore"``) or refused
        (``"strict"``: :class:`~synthesis.text.errors.NoticeTextError`, ``unspeakable_text``).
    """
    if not text.isascii():
        text = _OTHER_DIGIT.sub(lambda m: str(int(m.group())), text)
    text = _NUMBER.sub(_number, text)
    if _UNREAD.search(text):
        text = _UNREAD.sub(lambda m: _symbol(m, errors), text)
        text = " ".join(text.split())
    return text
