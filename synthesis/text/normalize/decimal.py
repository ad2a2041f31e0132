"""Decimal numbers: 1890.5555 -> 一千八百九十点五五五五; .22 -> 零点二二; 1,234.5 too."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import SIGN_LOOKBEHIND, cardinal, digit_string, integer

#: A number as written in running text: optional thousands commas and decimal part.
NUMBER = r"(?:\d{1,3}(?:,\d{3})++(?![\d,])|\d++)(?:\.\d++)?"


def decimal(number: str) -> str:
    """Read ``[-]int.frac``; the fraction is read digit by digit and keeps its zeros."""
    sign = ""
    if number[:1] in "-－负":
        sign, number = "负", number[1:]
    number = number.lstrip("+").replace(",", "")
    whole, _, frac = number.partition(".")
    text = sign + cardinal(whole or "0")
    return text + "点" + digit_string(frac) if frac else text


def number(text: str) -> str:
    """Any written number (sign, commas, decimals): a decimal, or an integer as a quantity."""
    if "." in text:
        return decimal(text)
    sign = "负" if text[:1] in "-－负" else ""
    return sign + integer(text.lstrip("-－负+"))


_DECIMAL = re.compile(
    r"(?:" + SIGN_LOOKBEHIND + r"([-－]))?(?<![\d.A-Za-z])(负)?"
    r"((?:\d{1,3}(?:,\d{3})++(?![\d,])|\d++)?\.\d++)(?![\d.])"
)


def apply(text: str) -> str:
    """Free-text rule: decimals (also before 万/亿, which stay as written)."""
    return _DECIMAL.sub(
        lambda m: ("负" if m.group(1) or m.group(2) else "") + decimal(m.group(3)), text
    )
