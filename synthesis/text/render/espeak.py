"""espeak-ng input: Mandarin as tone-numbered pinyin (cmn-latn-pinyin), Cantonese, English.

espeak-ng 1.51's plain ``cmn`` voice reads numbers and polyphones wrongly, so Mandarin is
fed as our own pinyin: overrides first, then pypinyin for the remaining Han runs.
"""

from __future__ import annotations

import re
from functools import lru_cache

from synthesis.text.ir import Segment
from synthesis.text.pinyin import HAN, marked_to_tone3, run_tone3

VOICES = {"cmn": "cmn-latn-pinyin", "yue": "yue", "en": "en-us"}

#: Punctuation the pinyin voice honours as a pause: comma for clauses, period for sentences.
_CLAUSE = frozenset("，、,：:；;—…（）()《》“”\"'‘’")
_SENTENCE = frozenset("。．.！!？?")
_DOUBLE_PAUSE = re.compile(r"([,.])(?: [,.])+")
_NO_BRACKETS = str.maketrans("", "", "[]")
#: Latin letters spelled the way Mandarin speakers say them, in tone-numbered pinyin.
LETTERS = {
    "A": "ei1", "B": "bi4", "C": "xi1", "D": "di4", "E": "yi4", "F": "ai2 fu5", "G": "ji4",
    "H": "ai2 chi5", "I": "ai4", "J": "zhei4", "K": "kei4", "L": "ai2 le5", "M": "ai2 mu5",
    "N": "en1", "O": "ou1", "P": "pi4", "Q": "kiu1", "R": "a4", "S": "ai2 si5", "T": "ti4",
    "U": "you1", "V": "wei1", "W": "da2 bu5 liu1", "X": "ai2 ke4 si5", "Y": "wai4", "Z": "zei4",
}  # fmt: skip


@lru_cache(maxsize=16384)
def _reading_tokens(reading: str) -> str:
    """An override's tone-marked reading as tone-numbered syllables."""
    return " ".join(marked_to_tone3(syllable) for syllable in reading.split())


@lru_cache(maxsize=65536)
def _gap_tokens(text: str) -> str:
    """Tokens for text outside overrides: pypinyin for Han runs, letters, pauses."""
    tokens: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if HAN.match(char):
            stop = index + 1
            while stop < len(text) and HAN.match(text[stop]):
                stop += 1
            tokens.extend(run_tone3(text[index:stop]))
            index = stop
            continue
        if char.isascii() and char.upper() in LETTERS:
            tokens.append(LETTERS[char.upper()])
        elif char in _SENTENCE:
            tokens.append(".")
        elif char in _CLAUSE:
            tokens.append(",")
        index += 1
    return " ".join(tokens)


def _pinyin_markup(segment: Segment) -> str:
    parts: list[str] = []
    text = segment.text
    position = 0
    for start, end, reading in segment.overrides:
        if start > position:
            parts.append(_gap_tokens(text[position:start]))
        parts.append(_reading_tokens(reading))
        position = end
    if position < len(text):
        parts.append(_gap_tokens(text[position:]))
    markup = " ".join(part for part in parts if part)
    # A pause mark directly after another one adds nothing.
    return _DOUBLE_PAUSE.sub(r"\1", markup)


@lru_cache(maxsize=65536)
def render_espeak(segment: Segment) -> tuple[str, str]:
    """espeak-ng voice and input text for one segment.

    cmn -> (``cmn-latn-pinyin``, ``"zeng1 xiao3 ming2 nin2 hao3 ,"``); yue -> (``yue``,
    the characters); en -> (``en-us``, the text).
    """
    voice = VOICES[segment.lang]
    if segment.lang != "cmn":
        # Never [[phonemes]]: composed segments hold no brackets; hand-built ones lose them.
        text = segment.text
        return voice, text.translate(_NO_BRACKETS) if "[" in text or "]" in text else text
    return voice, _pinyin_markup(segment)
