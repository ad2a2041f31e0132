"""Pinyin for names (surname-aware), lexicon words and running text, with caches.

pypinyin is used without ``load_phrases_dict`` (it changes global state); our own
readings are carried as overrides on the segment instead.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import chain

from pypinyin import Style, lazy_pinyin, pinyin
from pypinyin.constants import PHRASES_DICT
from pypinyin.contrib.tone_convert import to_tone3
from pypinyin.converter import DefaultConverter
from pypinyin.seg import simpleseg
from pypinyin.seg.mmseg import seg

from synthesis.text.lexicon import Lexicon

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

#: Readings of the characters the typed readers produce (numbers, units, dates, times).
#: Context-free in those positions, so the typed pieces carry them as overrides.
NUMBER_READINGS = {
    "零": "líng", "幺": "yāo", "一": "yī", "二": "èr", "两": "liǎng", "三": "sān", "四": "sì",
    "五": "wǔ", "六": "liù", "七": "qī", "八": "bā", "九": "jiǔ", "十": "shí", "百": "bǎi",
    "千": "qiān", "万": "wàn", "亿": "yì", "点": "diǎn", "负": "fù", "元": "yuán", "角": "jiǎo",
    "分": "fēn", "年": "nián", "月": "yuè", "日": "rì", "秒": "miǎo", "之": "zhī",
}  # fmt: skip
_NUMBER_RUN = re.compile("[" + "".join(NUMBER_READINGS) + "]+")


@lru_cache(maxsize=8192)
def heteronyms(char: str) -> tuple[str, ...]:
    """All tone-marked readings pypinyin knows for one character."""
    return tuple(pinyin(char, heteronym=True, errors="ignore")[0]) if HAN.match(char) else ()


@lru_cache(maxsize=65536)
def run_tone3(run: str) -> tuple[str, ...]:
    """pypinyin's reading of a run of Han characters, tone numbers, ü as v, neutral tone 5."""
    return tuple(lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True))


_CONVERTER = DefaultConverter()


@lru_cache(maxsize=16384)
def _word_marked(word: str) -> tuple[str, ...]:
    """pypinyin's tone-marked reading of one word of its own segmentation."""
    converted = _CONVERTER.convert(word, Style.TONE, False, "default", strict=True)
    return tuple(chain.from_iterable(converted))


#: The prefixes of pypinyin's phrases, as its segmenter holds them (see ``_cut``).
_PREFIXES: frozenset[str] | set[str] | None = getattr(
    getattr(seg, "_prefix_set", None), "_set", None
)


def _cut(run: str) -> list[str]:
    """``list(seg.cut(run))`` for an all-Han run, without the generator and a method call
    per prefix: the longest phrase from the left along pypinyin's own prefix set (the
    strict segmenter: a character alone where no phrase starts; a tail that is only a
    prefix, character by character). Tests hold it to ``seg.cut`` on phrase-rich text.
    """
    prefixes = _PREFIXES
    words: list[str] = []
    start, size = 0, len(run)
    while start < size:
        last = 0
        end = start + 1
        while end <= size and run[start:end] in prefixes:  # type: ignore[operator]
            if run[start:end] in PHRASES_DICT:
                last = end
            end += 1
        if last:
            words.append(run[start:last])
            start = last
        elif end <= size:
            words.append(run[start])
            start += 1
        else:
            words.extend(run[start:])
            break
    return words


def _words(run: str) -> list[str]:
    """pypinyin's segmentation of a run, as ``lazy_pinyin`` makes it."""
    if PHRASES_DICT and HAN_RUN.fullmatch(run):
        # simpleseg.seg hands an all-Han run to the phrase segmenter whole; skip its scan.
        return _cut(run) if _PREFIXES is not None else list(seg.cut(run))
    return simpleseg.seg(run)


class _RunReadings:
    """pypinyin's reading of a run of Han characters, tone marks: ``run_marked(run)``.

    What ``lazy_pinyin(run, style=Style.TONE)`` returns: pypinyin segments the run into
    words and reads each word on its own, so words are memoized (a name or an amount is
    new, its words are not); a test holds this to ``lazy_pinyin`` on random runs. Runs
    are remembered in a bounded table (cleared when full: unique names would grow it
    without end), which the name reader fills for a whole name it has segmented.
    """

    def __init__(self, limit: int) -> None:
        self._known: dict[str, tuple[str, ...]] = {}
        self._limit = limit

    def __call__(self, run: str) -> tuple[str, ...]:
        known = self._known.get(run)
        return known if known is not None else self.remember(run, _words(run))

    def remember(self, run: str, words: list[str]) -> tuple[str, ...]:
        """The reading of ``run`` from its words (``_words(run)``), remembered."""
        marked = tuple(chain.from_iterable(map(_word_marked, words)))
        if len(self._known) >= self._limit:
            self._known.clear()
        self._known[run] = marked
        return marked

    def cache_clear(self) -> None:
        self._known.clear()


run_marked = _RunReadings(65536)


@lru_cache(maxsize=4096)
def marked_to_tone3(syllable: str) -> str:
    """``zēng`` -> ``zeng1``; ``nǚ`` -> ``nv3``; neutral tone -> 5."""
    converted = to_tone3(syllable, v_to_u=False, neutral_tone_with_five=True)
    return converted.replace("ü", "v")


_TONE_MARKS = frozenset("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ")


def toned(syllable: str, char: str) -> str:
    """``syllable`` if it carries a tone, else the character's first toned reading.

    Names are read syllable by syllable with full tones: a neutral tone pypinyin takes
    from a word it knows (东西 dōng xi) is wrong in 王东西.
    """
    if _TONE_MARKS.isdisjoint(syllable):
        for reading in heteronyms(char):
            if not _TONE_MARKS.isdisjoint(reading):
                return reading
    return syllable


class NameReader:
    """Reads person names: surname from the lexicon table, given name by pypinyin."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._surnames = lexicon.surnames
        self._compound_lengths = sorted(
            {len(key) for key in lexicon.surnames if len(key) > 1}, reverse=True
        )
        self.read = lru_cache(maxsize=4096)(self._read)

    def split(self, name: str) -> tuple[str, str]:
        """Split ``name`` into surname and given name: the longest compound surname in the
        table that leaves a given name (欧阳修 -> 欧阳 + 修, but 欧阳 -> 欧 + 阳)."""
        for length in self._compound_lengths:
            if len(name) > length and name[:length] in self._surnames:
                return name[:length], name[length:]
        return name[:1], name[1:]

    def _read(self, name: str) -> tuple[str, ...]:
        """Tone-marked syllables, one per Han character of ``name``; every one toned."""
        surname, given = self.split(name)
        reading = self._surnames.get(surname)
        syllables = reading.split() if reading else [toned(s, surname) for s in run_marked(surname)]
        for run in HAN_RUN.findall(given):
            marked = self._given_marked(name, surname, given) if run == given else None
            if marked is None:
                marked = run_marked(run)
            if len(marked) != len(run):
                syllables.extend(marked)
                continue
            # A toneless syllable is plain ASCII (zi, de) or lü/nü: only those are looked up.
            for char, syllable in zip(run, marked, strict=True):
                plain = syllable.isascii() or syllable in ("lü", "nü")
                syllables.append(toned(syllable, char) if plain else syllable)
        return tuple(syllables)

    @staticmethod
    def _given_marked(name: str, surname: str, given: str) -> tuple[str, ...] | None:
        """pypinyin's reading of ``given`` from one segmentation of the whole name, or
        None when no word ends where the surname does.

        The whole name is also a span the CosyVoice3 markup asks pypinyin about, so it is
        segmented once for both. The segmenter is greedy from the left and keeps nothing
        between words: where a word ends at the surname, the words after it are the given
        name's own segmentation.
        """
        if not HAN_RUN.fullmatch(name):
            return None
        words = _words(name)
        run_marked.remember(name, words)
        end = 0
        for index, word in enumerate(words):
            if end == len(surname):
                return tuple(chain.from_iterable(map(_word_marked, words[index:])))
            end += len(word)
        return None


class WordAnnotator:
    """Override spans for text: lexicon words (longest match, left to right), then
    characters from ``char_defaults.tsv`` that pypinyin would read on their own (outside
    any phrase it knows), where its single-character default is the rarer reading."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._words = lexicon.words
        self._longest = lexicon.longest_word
        self._first_chars = {word[0] for word in lexicon.words}
        self._char_defaults = lexicon.char_defaults
        self.spans = lru_cache(maxsize=16384)(self._spans)

    def _spans(self, text: str) -> tuple[tuple[int, int, str], ...]:
        spans: list[tuple[int, int, str]] = []
        index = 0
        while index < len(text):
            if text[index] in self._first_chars:
                for length in range(min(self._longest, len(text) - index), 1, -1):
                    reading = self._words.get(text[index : index + length])
                    if reading:
                        spans.append((index, index + length, reading))
                        index += length
                        break
                else:
                    index += 1
            else:
                index += 1
        if self._char_defaults and not self._char_defaults.keys().isdisjoint(text):
            spans = sorted([*spans, *self._lone_chars(text, spans)])
        return tuple(spans)

    def _lone_chars(
        self, text: str, taken: list[tuple[int, int, str]]
    ) -> list[tuple[int, int, str]]:
        covered = {i for start, end, _ in taken for i in range(start, end)}
        found = []
        position = 0
        for token in seg.cut(text):
            reading = self._char_defaults.get(token) if len(token) == 1 else None
            if reading and position not in covered:
                found.append((position, position + 1, reading))
            position += len(token)
        return found


def number_spans(text: str) -> tuple[tuple[int, int, str], ...]:
    """Override spans for a typed reading (digits, units): maximal runs of known characters."""
    return tuple(
        (match.start(), match.end(), number_reading(match.group()))
        for match in _NUMBER_RUN.finditer(text)
    )


def number_reading(run: str) -> str:
    """The override of a run of number characters: ``NUMBER_READINGS``, one per character."""
    return " ".join(map(NUMBER_READINGS.__getitem__, run))


def is_number_run(text: str) -> bool:
    """Whether ``text`` is made of number characters only (``NUMBER_READINGS``)."""
    return _NUMBER_RUN.fullmatch(text) is not None


@lru_cache(maxsize=1)
def numbers_read_otherwise() -> re.Pattern[str]:
    """The words of number characters pypinyin reads otherwise than ``NUMBER_READINGS``
    (一百 yì bǎi, 一点 yì diǎn, 一五一十 ...), as one pattern.

    pypinyin reads a run word by word, and each word of a run of number characters is
    one of them alone or one of its phrases of them. A run that holds none of these
    words is read exactly as ``number_reading`` says, with no segmentation needed.
    """
    chars = frozenset(NUMBER_READINGS)
    words = [*chars, *(phrase for phrase in PHRASES_DICT if chars.issuperset(phrase))]
    otherwise = sorted(
        (word for word in words if _word_marked(word) != tuple(number_reading(word).split())),
        key=len,
        reverse=True,
    )
    return re.compile("|".join(map(re.escape, otherwise)) or "(?!)")


class TextReader:
    """Tone-marked reading of running text, one entry per character (None if not Han)."""

    def __init__(self, annotator: WordAnnotator) -> None:
        self._annotator = annotator

    def read(self, text: str) -> list[str | None]:
        readings: list[str | None] = [None] * len(text)
        position = 0
        for start, end, reading in (*self._annotator.spans(text), (len(text), len(text), "")):
            for match in HAN_RUN.finditer(text, position, start):
                syllables = run_marked(match.group())
                if len(syllables) == len(match.group()):
                    readings[match.start() : match.end()] = syllables
            readings[start:end] = reading.split()
            position = end
        return readings
