"""Money: typed amounts in 元角分 or decimal style, and currency signs in running text."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from synthesis.text.lexicon import read_tsv
from synthesis.text.normalize.cardinal import SIGN_LOOKBEHIND, cardinal, count
from synthesis.text.normalize.decimal import NUMBER, decimal
from synthesis.text.paths import INCLUDE_DIR

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


#: Currency sign or ISO code -> spoken currency (include/lexicons/currencies.tsv).
CURRENCIES = read_tsv(INCLUDE_DIR / "lexicons" / "currencies.tsv")
_YUAN_SIGNS = frozenset({"￥", "¥"})
_CODES = "|".join(re.escape(c) for c in sorted(CURRENCIES, key=len, reverse=True))
_LETTERS_CODES = "|".join(
    re.escape(c) for c in sorted(CURRENCIES, key=len, reverse=True) if c.isalpha()
)
_SCALE = r"(?:\s?([万亿]|[wW](?![A-Za-z])))?"
# Sign or code before the amount (¥1,234.56, CNY 1.25, US$100, HK$5万) ...
_BEFORE = re.compile(
    r"(?:"
    + SIGN_LOOKBEHIND
    + r"([-－]))?(?<![A-Za-z])("
    + _CODES
    + r")\s?("
    + NUMBER
    + r")(?:到("
    + NUMBER
    + r"))?"
    + _SCALE
    + r"(元)?"
)
# ... or an ISO code after it (100 USD, 5.5CNY).
_AFTER = re.compile(
    r"(?<![\d.])(" + NUMBER + r")" + _SCALE + r"\s?(" + _LETTERS_CODES + r")(?![A-Za-z])"
)
_YUAN = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})++(?![\d,])|\d++)\.(\d{1,2})元")


def _amount(
    number: str,
    scale: str | None,
    currency: str,
    sign: str | None,
    style: str,
    yuan: str | None = None,
) -> str:
    number = number.replace(",", "")
    scale = "万" if scale in ("w", "W") else (scale or "")
    spoken = CURRENCIES[currency]
    negative = "负" if sign else ""
    if yuan and spoken not in ("元", "人民币"):
        return negative + decimal(number) + scale + spoken  # US$5元: the sign says which
    if (currency in _YUAN_SIGNS or yuan) and not scale:
        try:
            return negative + money(parse_amount(number), style)
        except ValueError:
            pass
    return negative + decimal(number) + scale + ("元" if yuan else spoken)


def _before(style: str):
    """Reader for a sign or code before an amount, or before a range (¥100到200)."""

    def read(match: re.Match[str]) -> str:
        sign, currency, low, high, scale, yuan = match.groups()
        if not high:
            return _amount(low, scale, currency, sign, style, yuan)
        spoken = "元" if yuan else CURRENCIES[currency]
        scale = "万" if scale in ("w", "W") else (scale or "")
        return ("负" if sign else "") + decimal(low) + "到" + decimal(high) + scale + spoken

    return read


def _yuan(match: re.Match[str], style: str) -> str:
    return money(parse_amount(f"{match.group(1)}.{match.group(2)}".replace(",", "")), style)


def apply(text: str, style: str = "yuan-jiao-fen") -> str:
    """Free-text rule: ``$5`` -> 五美元, ``CNY1.25`` -> 一点二五人民币, ``63.89元`` (by style)."""
    text = _BEFORE.sub(_before(style), text)
    text = _AFTER.sub(lambda m: _amount(m[1], m[2], m[3], None, style), text)
    return _YUAN.sub(lambda m: _yuan(m, style), text)
