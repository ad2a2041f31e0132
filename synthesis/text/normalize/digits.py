"""Digit strings read one by one: phone numbers, IPs, service numbers, codes, identifiers."""

from __future__ import annotations

import re

from synthesis.text.lexicon import read_tsv
from synthesis.text.normalize.cardinal import DIGITS, MEASURE_WORDS
from synthesis.text.paths import INCLUDE_DIR

#: Letters are read by name in Mandarin speech ("P" stays "P"); only digits are replaced.
_PHONE_CHARS = re.compile(r"[\s\-()（）+]")
#: Numbers read digit by digit wherever they stand alone (110, 12306, 10086, 985 ...).
SERVICE_NUMBERS = frozenset(read_tsv(INCLUDE_DIR / "lexicons" / "service_numbers.tsv"))


def digits(text: str, *, yao: bool = False) -> str:
    """Read each digit: ``"0427"`` -> ``零四二七``; with ``yao=True`` 1 is 幺 (phone style)."""
    table = DIGITS.replace("一", "幺") if yao else DIGITS
    return "".join(table[ord(char) - 48] if "0" <= char <= "9" else char for char in text)


def phone(number: str, *, yao: bool = True) -> str:
    """Read a phone number digit by digit, dropping separators: 0755-8888 -> 零七五五八八八八."""
    return digits(_PHONE_CHARS.sub("", number), yao=yao)


# What may not follow a number for it to be an identifier rather than a quantity.
_NOT_QUANTITY = r"(?![\d.,%‰°²³A-Za-z" + MEASURE_WORDS + r"万亿])"
_START = r"(?<![\d.\-/:第])(?<!\d,)"

# 127.0.0.1 -> 一二七点零点零点一; a dotted run of 3+ groups (versions 1.2.3) likewise.
_DOTTED = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){2,}+(?![\d.])")
# Landline with area code (0421-33441122, (010)12345678), 400/800 numbers, +86 mobiles.
_AREA_PHONE = re.compile(
    r"(?<![\d\-])(?:(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3}-)\s?\d{7,8}"
    r"|0\d{2,3}[\s-]\d{3,4}[\s-]\d{4})(?![\d\-])"
)
_HOTLINE = re.compile(r"(?<![\d\-])[48]00-?\d{3}-?\d{4}(?![\d\-])")
_INTL_PHONE = re.compile(r"\+86[\s-]?(1[3-9]\d(?:[\s-]?\d{4}){2})(?!\d)")
_MOBILE = re.compile(r"(?<![\d.])1[3-9]\d(?:([\s-]?)\d{4}\1\d{4})(?![\d.])")
# An 8-digit number without a run of three zeros (a phone number, not 10001111); 5-digit bank
# and carrier hotlines (10000, 10010 and 10011 alone are quantities: listed ones aside).
_LANDLINE = re.compile(_START + r"(?!\d{0,5}000)[1-9]\d{7}" + _NOT_QUANTITY)
_SERVICE = re.compile(_START + r"(?:9[56](?!000)\d{3}|100[2-9]\d)" + _NOT_QUANTITY)
_LISTED = re.compile(_START + r"(\d{3,5})" + _NOT_QUANTITY)
# Hyphen-joined groups (2-1-301, 2026-0815): an address or a code, not a range.
_GROUPS = re.compile(r"(?<![\d.\-])\d++(?:-\d++){2,}+(?![\d.\-])|(?<![\d.\-])0\d++-\d++(?![\d.\-])")
# Digits after a word that names an identifier (尾号1702, 编号为27149, 卡号：6222...).
_KEYWORD = re.compile(
    r"(编号|号码|电话|手机|热线|尾号|卡号|工号|账号|帐号|单号|代码|验证码|密码|身份证号|学号|"
    r"车牌号|房号|订单号|流水号|序号|批号)(为|是|：|:)?\s?([A-Za-z]*\d[\dA-Za-z\-]*)"
)
# 4+ digits before 号, or 3 in quotes (“26314”号, but 中关村101号), letters with long digit
# runs (P2026A0815), digit runs with a leading zero (0427).
_BEFORE_HAO = re.compile(r"(?<![\d.月])(\d{4,}|(?<=[“\"「『])\d{3})(?=[”\"」』]?号)")
_CODE = re.compile(r"(?<![\d.A-Za-z])(?:([A-Za-z]++)\d{4,}+|\d++[A-Za-z]++\d++)[A-Za-z\d]*+")
#: Letter prefixes that are currency codes (CNY1000 is an amount, not a code).
_CURRENCY_CODES = frozenset(
    code for code in read_tsv(INCLUDE_DIR / "lexicons" / "currencies.tsv") if code.isalpha()
)
_LEADING_ZERO = re.compile(r"(?<![\d.,])0\d++(?![\d.,])")


def _listed(match: re.Match[str]) -> str:
    return digits(match.group()) if match.group() in SERVICE_NUMBERS else match.group()


def apply(text: str) -> str:
    """Free-text rule: identifier-like digit runs become digit strings."""
    text = _DOTTED.sub(lambda m: digits(m.group()).replace(".", "点"), text)
    text = _INTL_PHONE.sub(lambda m: digits("86" + re.sub(r"\D", "", m.group(1))), text)
    for pattern in (_AREA_PHONE, _HOTLINE):
        text = pattern.sub(lambda m: phone(m.group(), yao=False), text)
    text = _KEYWORD.sub(lambda m: m.group(1) + (m.group(2) or "") + digits(m.group(3)), text)
    text = _BEFORE_HAO.sub(lambda m: digits(m.group(1)), text)
    text = _MOBILE.sub(lambda m: phone(m.group(), yao=False), text)
    for pattern in (_LANDLINE, _SERVICE):
        text = pattern.sub(lambda m: digits(m.group()), text)
    text = _LISTED.sub(_listed, text)
    text = _GROUPS.sub(lambda m: digits(m.group().replace("-", "")), text)
    text = _CODE.sub(
        lambda m: m.group() if m.group(1) in _CURRENCY_CODES else digits(m.group()), text
    )
    return _LEADING_ZERO.sub(lambda m: digits(m.group()), text)
