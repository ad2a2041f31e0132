"""Money: typed amounts in 元角分 or decimal style, and currency signs in running text."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from synthesis.text.normalize.cardinal import cardinal, count
from synthesis.text.normalize.decimal import decimal

MONEY_STYLES = ("yuan-jiao-fen", "decimal")
#: Largest amount a notice may carry (exclusive), in yuan.
MAX_AMOUNT = Decimal("1000000000000")

_AMOUNT = re.compile(r"^[¥￥]?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\s*(?:元)?$")


def parse_amount(value: object) -> Decimal:
    """Parse a CRM amount (``"3280.50"``, ``3280.5``, ``"¥3,280.50"``) into yuan, 2 decimals.

    :raises ValueError: not a non-negative amount with at most two decimals.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, int | float | Decimal):
        try:
            amount = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"not an amount: {value!r}") from exc
        if not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
            raise ValueError(f"not an amount with at most two decimals: {value!r}")
    else:
        match = _AMOUNT.match(str(value).strip())
        if not match:
            raise ValueError(f"not an amount: {value!r}")
        amount = Decimal(match.group(1).replace(",", "") + "." + (match.group(2) or "0"))
    if amount < 0 or amount >= MAX_AMOUNT:
        raise ValueError(f"amount out of range: {value!r}")
    return amount.quantize(Decimal("0.01"))


def money(amount: Decimal, style: str = "yuan-jiao-fen") -> str:
    """Read an amount in yuan: 3280.50 -> 三千二百八十元五角 (or 三千二百八十点五元)."""
    if style not in MONEY_STYLES:
        raise ValueError(f"money style must be one of {MONEY_STYLES}")
    yuan, cents = divmod(int(amount * 100), 100)
    if style == "decimal":
        text = f"{amount:.2f}".rstrip("0").rstrip(".")
        return decimal(text) + "元"
    jiao, fen = divmod(cents, 10)
    parts: list[str] = []
    if yuan or not cents:
        parts.append(count(yuan) + "元")
    if jiao:
        parts.append(count(jiao) + "角")
    if fen:
        if yuan and not jiao:
            parts.append("零")
        parts.append(cardinal(fen) + "分")
    return "".join(parts)


_SIGNS = {"$": "美元", "￥": "元", "¥": "元", "€": "欧元", "£": "英镑", "₩": "韩元", "HK$": "港元"}
_SIGNED = re.compile(r"(HK\$|[$￥¥€£₩])\s?(\d+(?:,\d{3})*(?:\.\d+)?)([万亿]?)")
_YUAN = re.compile(r"(?<![\d.])(\d+(?:,\d{3})*)\.(\d{1,2})元")


def _signed(match: re.Match[str], style: str) -> str:
    sign, number, scale = match.groups()
    number = number.replace(",", "")
    if _SIGNS[sign] == "元" and not scale:
        try:
            return money(parse_amount(number), style)
        except ValueError:
            pass
    return decimal(number) + scale + _SIGNS[sign]


def _yuan(match: re.Match[str], style: str) -> str:
    return money(parse_amount(f"{match.group(1)}.{match.group(2)}".replace(",", "")), style)


def apply(text: str, style: str = "yuan-jiao-fen") -> str:
    """Free-text rule: ``$5`` -> 五美元, ``63.89元`` -> 六十三元八角九分 (style-dependent)."""
    text = _SIGNED.sub(lambda m: _signed(m, style), text)
    return _YUAN.sub(lambda m: _yuan(m, style), text)
