"""Clock times: 15:30 -> 十五点三十分, 15:05 -> 十五点零五分; scores 17:16 -> 十七比十六."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import cardinal

_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:：]([0-5]\d)(?:[:：]([0-5]\d))?$")


def parse_time(value: object) -> tuple[int, int, int | None]:
    """Parse ``"15:30"`` or ``"15:30:00"`` into hour, minute, second.

    :raises ValueError: not a 24-hour clock time.
    """
    match = _CLOCK.match(str(value).strip())
    if not match:
        raise ValueError(f"not a time: {value!r}")
    hour, minute, second = match.groups()
    return int(hour), int(minute), int(second) if second is not None else None


def _two(number: int) -> str:
    return ("零" if 0 < number < 10 else "") + cardinal(number)


def clock(hour: int, minute: int, second: int | None = None) -> str:
    """Read a 24-hour time; minutes and seconds below ten get 零 (十五点零五分)."""
    text = cardinal(hour) + "点"
    if second is not None:
        return text + (_two(minute) if minute else "零") + "分" + _two(second) + "秒"
    return text + (_two(minute) + "分" if minute else "")


_TEXT_CLOCK = re.compile(r"(?<![\d.:])(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?(?![\d:])")
_SCORE = re.compile(r"(比分|比赛|战胜|击败|比)\S{0,4}?$")


def _text_clock(match: re.Match[str], text: str) -> str:
    hour, minute, second = match.groups()
    if second is None and _SCORE.search(text[: match.start()]):
        return cardinal(hour) + "比" + cardinal(minute)
    if int(hour) > 24 or int(minute) > 59 or (second and int(second) > 59):
        return cardinal(hour) + "比" + cardinal(minute)
    if second is not None:
        return clock(int(hour), int(minute), int(second))
    return clock(int(hour), int(minute))


def apply(text: str) -> str:
    """Free-text rule: ``HH:MM[:SS]`` as a time, or as a score after 比分."""
    return _TEXT_CLOCK.sub(lambda m: _text_clock(m, text), text)
