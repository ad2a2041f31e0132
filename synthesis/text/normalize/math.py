"""Signed and math expressions: 1+2 -> 一加二, 2 = 1 + 1 -> 二等于一加一, ±2 -> 正负二.

A ``-`` is read 减 only inside an expression that has another operator (3-2=1); alone
between two numbers it is a range (12-23, ``range.py``) or a score (``score.py``).
"""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import MEASURE_WORDS
from synthesis.text.normalize.decimal import NUMBER, number
from synthesis.text.normalize.fraction import fraction

OPERATORS = {
    "+": "加", "-": "减", "−": "减", "×": "乘", "*": "乘", "÷": "除以", "=": "等于",
    "==": "等于", "<": "小于", ">": "大于", "<=": "小于等于", ">=": "大于等于",
    "≤": "小于等于", "≥": "大于等于", "≠": "不等于", "!=": "不等于", "≈": "约等于",
}  # fmt: skip
_PREFIXES = {
    "±": "正负", "≥": "大于等于", "≤": "小于等于", "≈": "约等于", "≠": "不等于", "+": "正",
}  # fmt: skip

_FRACTION = r"\d{1,12}/\d{1,12}(?![\d.])"
_OPERAND = r"(?:[-−]?(?:" + _FRACTION + "|" + NUMBER + r"%?)|(?<![A-Za-z])[A-Za-z](?![A-Za-z]))"
_OPERATOR = r"(?:<=|>=|!=|==|[+\-−×*÷=<>≤≥≠≈])"
_EXPRESSION = re.compile(
    r"(?<![\d.A-Za-z])" + _OPERAND + r"(?:\s?" + _OPERATOR + r"\s?" + _OPERAND + r")++"
)
_TOKEN = re.compile(
    r"(?P<operand>" + _FRACTION + r"|" + NUMBER + r"%?|[A-Za-z])"
    r"|(?P<operator><=|>=|!=|==|[+\-−×*÷=<>≤≥≠≈])|\s"
)
_PREFIX = re.compile(r"(?<![\dA-Za-z+])([±≥≤≈≠+])\s?(?=[-−]?\d)")
# Powers: 10^6 -> 十的六次方, 5² -> 五的平方, 2³ -> 二的立方.
_POWER = re.compile(r"(?<![\d.])(" + NUMBER + r")(?:\^([-−]?\d{1,3})(?!\d)|([²³]))")


def _operand(text: str) -> str:
    if "/" in text:
        numerator, denominator = text.split("/")
        return fraction(numerator, denominator)
    if text.endswith("%"):
        return "百分之" + number(text[:-1])
    return number(text) if text[0].isdigit() else text


_DIFFERENCE = re.compile(r"(\d{1,6})\s?[-−]\s?(\d{1,6})")


def _difference(match: re.Match[str]) -> str | None:
    """``9-3`` alone is a subtraction: a range runs upwards (3-9), an abbreviated one
    (730-40, 15-6) has a shorter second end, and a score follows a name (中国3-1)."""
    whole = _DIFFERENCE.fullmatch(match.group())
    following = match.string[match.end() : match.end() + 1]
    if not whole or (following and following in MEASURE_WORDS + "万亿%"):
        return None
    before = match.string[max(0, match.start() - 2) : match.start()].strip()
    if before and "\u4e00" <= before[-1] <= "\u9fff":
        return None  # after a name: a score (中国3-1), read by score.py
    left, right = whole.groups()
    if left[0] == "0" or right[0] == "0" or len(left) != len(right) or int(left) <= int(right):
        return None
    return number(left) + "减" + number(right)


def _expression(match: re.Match[str]) -> str:
    text = match.group()
    if not any(op in text for op in "+×*÷=<>≤≥≠≈"):
        return _difference(match) or text  # else a range, a score, a fraction or a code
    out: list[str] = []
    expect_operand = True
    for token in _TOKEN.finditer(text):
        if token.group("operand"):
            out.append(_operand(token.group("operand")))
            expect_operand = False
        elif token.group("operator"):
            operator = token.group("operator")
            signed = expect_operand and operator in "-−"
            out.append("负" if signed else OPERATORS[operator])
            expect_operand = True
    return "".join(out)


def _power(match: re.Match[str]) -> str:
    base, exponent, square = match.groups()
    if square:
        return number(base) + ("的平方" if square == "²" else "的立方")
    return (
        number(base)
        + "的"
        + ("负" if exponent[0] in "-−" else "")
        + number(exponent.lstrip("-−"))
        + "次方"
    )


def apply(text: str) -> str:
    """Free-text rule: arithmetic and comparisons between numbers, and ± ≥ ≤ before one."""
    text = _POWER.sub(_power, text)
    text = _EXPRESSION.sub(_expression, text)
    return _PREFIX.sub(lambda m: _PREFIXES[m.group(1)], text)
