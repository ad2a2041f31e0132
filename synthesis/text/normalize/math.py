"""Signed and math expressions: 1+2 -> 一加二, 2 = 1 + 1 -> 二等于一加一, ±2 -> 正负二.

A ``-`` is read 减 only inside an expression that has another operator (3-2=1); alone
between two numbers it is a range (12-23, ``range.py``) or a score (``score.py``).
"""

from __future__ import annotations

import re

from synthesis.text.normalize.decimal import NUMBER, number

OPERATORS = {
    "+": "加", "-": "减", "−": "减", "×": "乘", "*": "乘", "÷": "除以", "=": "等于",
    "==": "等于", "<": "小于", ">": "大于", "<=": "小于等于", ">=": "大于等于",
    "≤": "小于等于", "≥": "大于等于", "≠": "不等于", "!=": "不等于", "≈": "约等于",
}  # fmt: skip
_PREFIXES = {
    "±": "正负", "≥": "大于等于", "≤": "小于等于", "≈": "约等于", "≠": "不等于", "+": "正",
}  # fmt: skip

_OPERAND = r"(?:[-−]?" + NUMBER + r"%?|(?<![A-Za-z])[A-Za-z](?![A-Za-z]))"
_OPERATOR = r"(?:<=|>=|!=|==|[+\-−×*÷=<>≤≥≠≈])"
_EXPRESSION = re.compile(
    r"(?<![\d.A-Za-z])" + _OPERAND + r"(?:\s?" + _OPERATOR + r"\s?" + _OPERAND + r")++"
)
_TOKEN = re.compile(
    r"(?P<operand>" + NUMBER + r"%?|[A-Za-z])|(?P<operator><=|>=|!=|==|[+\-−×*÷=<>≤≥≠≈])|\s"
)
_PREFIX = re.compile(r"(?<![\dA-Za-z+])([±≥≤≈≠+])\s?(?=[-−]?\d)")
# Powers: 10^6 -> 十的六次方, 5² -> 五的平方, 2³ -> 二的立方.
_POWER = re.compile(r"(?<![\d.])(" + NUMBER + r")(?:\^([-−]?\d{1,3})(?!\d)|([²³]))")


def _operand(text: str) -> str:
    if text.endswith("%"):
        return "百分之" + number(text[:-1])
    return number(text) if text[0].isdigit() else text


def _expression(match: re.Match[str]) -> str:
    text = match.group()
    if not any(op in text for op in "+×*÷=<>≤≥≠≈"):
        return text  # only hyphens: a range, a score or a code, read by later rules
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
