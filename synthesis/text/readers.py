"""Typed readers: a raw CRM value of a declared type -> spoken text and pronunciation overrides.

The composer knows each value's type from the catalogue, so nothing here guesses: an
amount is read as money, a card tail digit by digit, a name with its surname reading.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from pypinyin.seg.mmseg import seg

from synthesis.text.errors import NoticeTextError
from synthesis.text.normalize import cardinal as cardinal_rule
from synthesis.text.normalize import date as date_rule
from synthesis.text.normalize import digits as digits_rule
from synthesis.text.normalize import english, normalize_cached
from synthesis.text.normalize import money as money_rule
from synthesis.text.normalize import percent as percent_rule
from synthesis.text.normalize import time as time_rule
from synthesis.text.pinyin import HAN_RUN, NameReader, WordAnnotator, number_spans, run_marked
from synthesis.text.speakable import MARKUP_POLICIES, strip_markup

Overrides = tuple[tuple[int, int, str], ...]
Reading = tuple[str, Overrides]

#: Unicode categories never accepted in a value: controls, format, surrogates, private use,
#: unassigned, and symbols (emoji and pictographs are ``So``).
_REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "So"})
#: Cantonese customers get traditional characters for the readers' output.
_TO_TRADITIONAL = str.maketrans("两万亿点负号钟", "兩萬億點負號鐘")

_HAN_NAME = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+(?:[·•][\u3400-\u9fff]+)*$")
_LATIN_NAME = re.compile(r"^[A-Za-z][A-Za-z .'\-]*[A-Za-z.]$|^[A-Za-z]$")
_PHONE = re.compile(r"^\+?[\d\s\-()]{3,24}$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]*$")
_KEYS_ZH = {"*": "星号键", "#": "井号键"}
_KEYS_EN = {"*": "star", "#": "pound"}


#: Values made only of printable ASCII, assigned CJK ideographs and the middle dot (most
#: names and departments) need no per-character look-up.
_PLAIN_VALUE = re.compile(r"[ -~\u4e00-\u9fa5\u00b7]*+")


def check_characters(name: str, value: str) -> None:
    """Reject control characters, emoji, private-use and unassigned characters."""
    if _PLAIN_VALUE.fullmatch(value):
        return
    for char in value:
        if unicodedata.category(char) in _REJECTED_CATEGORIES:
            raise NoticeTextError(
                "unsupported_characters", f"{name}: character U+{ord(char):04X} is not allowed"
            )


class Readers:
    """Reads typed values for one composer (one lexicon, one money style); memoized."""

    def __init__(
        self,
        names: NameReader,
        words: WordAnnotator,
        money_style: str,
        data_markup: str = "strip",
    ) -> None:
        if money_style not in money_rule.MONEY_STYLES:
            raise ValueError(f"money_style must be one of {money_rule.MONEY_STYLES}")
        if data_markup not in MARKUP_POLICIES:
            raise ValueError(f"data_markup must be one of {MARKUP_POLICIES}")
        self.names = names
        self.words = words
        self.money_style = money_style
        self.data_markup = data_markup
        self._by_type: dict[str, Callable[[str, object, str], Reading]] = {}

    def read(self, name: str, type_: str, raw: str | int | float, locale: str) -> Reading:
        """Spoken text and overrides for one value; raises :class:`NoticeTextError`."""
        reader = self._by_type.get(type_)
        if reader is None:
            reader = self._by_type[type_] = getattr(self, f"_{type_}")
        try:
            text, overrides = reader(name, raw, locale)
        except NoticeTextError:
            raise
        except (ValueError, TypeError, ArithmeticError, InvalidOperation) as exc:
            raise NoticeTextError("invalid_variable", f"{name}: {exc}") from None
        if locale == "yue":
            return text.translate(_TO_TRADITIONAL), ()
        return text, overrides if locale == "cmn" else ()

    # Each reader returns (text, overrides); overrides are kept only for cmn.

    def _money(self, name: str, raw: object, locale: str) -> Reading:
        amount = money_rule.parse_amount(raw)
        if locale == "en":
            return english.money_en(amount, self.money_style), ()
        text = money_rule.money(amount, self.money_style)
        return text, number_spans(text)

    def _date(self, name: str, raw: object, locale: str) -> Reading:
        day = date_rule.parse_date(raw)
        if locale == "en":
            return english.date_en(day), ()
        text = date_rule.date(day)
        return text, number_spans(text)

    def _time(self, name: str, raw: object, locale: str) -> Reading:
        hour, minute, _ = time_rule.parse_time(raw)
        if locale == "en":
            return english.time_en(hour, minute), ()
        text = time_rule.clock(hour, minute)
        return text, number_spans(text)

    def _phone(self, name: str, raw: object, locale: str) -> Reading:
        value = str(raw).strip()
        if not _PHONE.match(value) or sum(c.isdigit() for c in value) < 3:
            raise ValueError("not a phone number")
        if locale == "en":
            return english.digits_en(re.sub(r"\D", "", value)), ()
        text = digits_rule.phone(value, yao=locale == "cmn")
        return text, number_spans(text)

    def _code(self, name: str, raw: object, locale: str) -> Reading:
        value = str(raw).strip()
        if not _CODE.match(value):
            raise ValueError("a code has letters and digits only")
        value = value.replace("-", "").upper()
        if locale == "en":
            return english.digits_en(value), ()
        text = digits_rule.digits(value, yao=locale == "cmn")
        return text, number_spans(text)

    def _percent(self, name: str, raw: object, locale: str) -> Reading:
        value = str(raw).strip().rstrip("%％").strip()
        number = Decimal(value)
        if not number.is_finite() or abs(number) >= 10**6:
            raise ValueError("percent out of range")
        plain = format(number.normalize(), "f")
        if locale == "en":
            return english.normalize_en(plain.lstrip("-")) + " percent", ()
        text = percent_rule.percent(plain)
        return text, number_spans(text)

    def _count(self, name: str, raw: object, locale: str) -> Reading:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("a count is a whole number")
        value = int(raw) if isinstance(raw, int | float) else int(str(raw).strip())
        if not 0 <= value < 10**12:
            raise ValueError("count out of range")
        if locale == "en":
            return english.cardinal_en(value), ()
        text = cardinal_rule.count(value)
        return text, number_spans(text)

    def _key(self, name: str, raw: object, locale: str) -> Reading:
        value = str(raw).strip()
        if len(value) != 1 or value not in "0123456789*#":
            raise NoticeTextError("invalid_context", f"{name}: a key is one of 0-9, * or #")
        if locale == "en":
            return _KEYS_EN.get(value) or english.cardinal_en(int(value)), ()
        text = _KEYS_ZH.get(value) or cardinal_rule.DIGITS[int(value)]
        return text, number_spans(text)

    def _free_text(self, name: str, raw: object, locale: str) -> Reading:
        # Engine markup in data is stripped or refused before anything reads the value;
        # a symbol with no reading makes the notice unspeakable rather than read wrong.
        value = strip_markup(" ".join(str(raw).split()), self.data_markup)
        if locale == "en":
            return english.normalize_en(self._romanize(value), "strict"), ()
        text = normalize_cached(value, self.money_style, "strict")
        return text, self.words.spans(text)

    def _person_name(self, name: str, raw: object, locale: str) -> Reading:
        value = " ".join(str(raw).split())
        if not value:
            raise NoticeTextError("empty_name", f"{name}: blank")
        if not (_HAN_NAME.match(value) or _LATIN_NAME.match(value)):
            raise NoticeTextError("invalid_name", f"{name}: not a person name")
        if locale == "en":
            return self._romanize_name(value), ()
        if HAN_RUN.fullmatch(value):  # the common case: one run of Han characters
            whole = self.names.read(value)
            if len(whole) == len(value):
                return value, ((0, len(value), " ".join(whole)),)
        overrides: list[tuple[int, int, str]] = []
        syllables = iter(self.names.read(value.replace("·", "").replace("•", "")))
        for match in HAN_RUN.finditer(value):
            reading = " ".join(next(syllables) for _ in match.group())
            overrides.append((match.start(), match.end(), reading))
        return value, tuple(overrides)

    # English customers: Han characters romanized without tones.

    def _romanize_name(self, value: str) -> str:
        if not HAN_RUN.search(value):
            return value
        surname, _ = self.names.split(value)
        plain = [_plain(s) for s in self.names.read(value)]
        head = "".join(plain[: len(surname)]).capitalize()
        tail = "".join(plain[len(surname) :]).capitalize()
        return f"{head} {tail}".strip()

    def _romanize(self, value: str) -> str:
        def romanize_run(match: re.Match[str]) -> str:
            words = []
            for word in seg.cut(match.group()):
                words.append("".join(_plain(s) for s in run_marked(word)).capitalize())
            return " " + " ".join(words) + " "

        return " ".join(HAN_RUN.sub(romanize_run, value).split())


def _plain(syllable: str) -> str:
    """Strip tone marks: ``zēng`` -> ``zeng``; ``lǜ`` -> ``lü``."""
    decomposed = unicodedata.normalize("NFD", syllable)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn" or c == "\u0308")
    return unicodedata.normalize("NFC", stripped)
