"""What each engine can read, checked on segments and on rendered engine input.

Three layers keep unspeakable text and control tokens away from the engines:

1. :func:`strip_markup` runs on free-text CRM values before normalization. Engine markup
   found in data (CosyVoice3 ``<|endofprompt|>``, ``[breath]`` and the other tokens of its
   inventory, espeak-ng ``[[...]]`` phonemes, SSML/XML tags) is removed (policy
   ``"strip"``) or refused (policy ``"reject"``), with reason ``control_token_in_data``.
2. :func:`segment_problem` checks every composed segment: Mandarin and Cantonese text holds
   only Han characters, Latin letters, spaces and punctuation (no digit, no symbol, no
   bracket); English text only Latin letters, spaces and punctuation. Another script is
   ``unsupported_script``; a digit or symbol is ``unspeakable_text``.
3. :func:`cosyvoice3_problem`, :func:`espeak_problem` and :func:`ssml_problem` check what a
   renderer produced: only tokens the renderer itself emits (inventory pinyin and CMU
   tokens for CosyVoice3, tone-numbered pinyin for the espeak-ng pinyin voice).

Each check returns ``None`` or ``(reason_code, detail)``; the composer turns a problem into
:class:`~synthesis.text.errors.NoticeTextError`, so the notice is skipped, never read wrong.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from synthesis.text.errors import NoticeTextError

if TYPE_CHECKING:
    from synthesis.text.ir import Segment
    from synthesis.text.render.cosyvoice3 import TokenInventory

Problem = tuple[str, str] | None
MARKUP_POLICIES = ("strip", "reject")

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: Chinese punctuation every engine reads as a pause or ignores.
_ZH_PUNCTUATION = "，。！？；：、“”‘’（）《》〈〉「」『』【】—…·～"
_PLAIN_PUNCTUATION = r" ,.!?;:'\"()\-"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_ALLOWED = {
    "cmn": re.compile(f"[{_HAN}{_ZH_PUNCTUATION}{_LATIN}{_PLAIN_PUNCTUATION}]*+"),
    "en": re.compile(f"[{_LATIN}{_PLAIN_PUNCTUATION}]*+"),
}
_ALLOWED["yue"] = _ALLOWED["cmn"]

# Engine markup as it may arrive inside CRM data. Bounded repetitions keep these linear.
_MARKUP = re.compile(
    r"<\|[^|<>\n]{0,64}\|>"  # CosyVoice3 special tokens: <|endofprompt|>
    r"|\[\[[^\]]{0,256}\]\]"  # espeak-ng phoneme input: [[h@'loU]]
    r"|\[[A-Za-z\u00c0-\u024f_\-]{1,32}[0-9]?\]"  # [breath], [laughter], [z][ēng], [AY1]
    r"|</?[A-Za-z!?][^<>\n]{0,128}>"  # SSML / XML tags
    r"|<\||\|>|\[\[|\]\]"  # halves of the above left by a broken value
)


def strip_markup(value: str, policy: str = "strip") -> str:
    """Remove (``"strip"``) or refuse (``"reject"``) engine markup found in a data value.

    :raises NoticeTextError: ``control_token_in_data`` when the policy is ``"reject"`` and
        markup is found, or when nothing speakable is left after stripping.
    """
    if policy not in MARKUP_POLICIES:
        raise ValueError(f"markup policy must be one of {MARKUP_POLICIES}")
    if "<" not in value and "[" not in value and "|" not in value and "]" not in value:
        return value
    stripped = _MARKUP.sub(" ", value)
    if stripped == value:
        return value
    if policy == "reject":
        raise NoticeTextError("control_token_in_data", "engine markup in a data value")
    stripped = " ".join(stripped.split())
    if not stripped.strip(_PLAIN_PUNCTUATION + _ZH_PUNCTUATION):
        raise NoticeTextError("control_token_in_data", "nothing but engine markup in a value")
    return stripped


def text_problem(text: str, lang: str) -> Problem:
    """The first character of ``text`` its language's engines cannot read, as a problem."""
    allowed = _ALLOWED[lang]
    match = allowed.match(text)
    if match.end() == len(text):
        return None
    char = text[match.end()]
    code = "unsupported_script" if char.isalpha() else "unspeakable_text"
    return code, f"{lang} text has U+{ord(char):04X}"


def segment_problem(segment: Segment) -> Problem:
    """Whether a composed segment holds only what its language's engines read."""
    return text_problem(segment.text, segment.lang)


def check_segment(segment: Segment) -> Segment:
    """Return ``segment``, or raise :class:`NoticeTextError` with the problem's reason code."""
    if _ALLOWED[segment.lang].fullmatch(segment.text) is None:  # the hot path: one match
        raise NoticeTextError(*text_problem(segment.text, segment.lang))
    return segment


_COSYVOICE3_CONTROL = re.compile(r"<\||\|>")
_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


def cosyvoice3_problem(rendered: str, lang: str, inventory: TokenInventory) -> Problem:
    """Whether CosyVoice3 input holds only text and the tokens our renderer emits."""
    if _COSYVOICE3_CONTROL.search(rendered):
        return "control_token_in_data", "a <|...|> token in CosyVoice3 text"
    for token in _BRACKETED.findall(rendered):
        if token not in inventory.pinyin and token not in inventory.cmu:
            return "control_token_in_data", f"[{token[:32]}] is not a token we emit"
    return text_problem(_BRACKETED.sub("", rendered), lang)


_PINYIN_TOKEN = re.compile(r"(?:[a-zü]{1,6}[1-5]|[,.])(?: (?:[a-zü]{1,6}[1-5]|[,.]))*+")


def espeak_problem(voice: str, rendered: str) -> Problem:
    """Whether espeak-ng input is plain text for its voice (never ``[[phonemes]]``)."""
    if "[[" in rendered or "]]" in rendered:
        return "control_token_in_data", "espeak-ng phoneme brackets in the input"
    if voice == "cmn-latn-pinyin":
        if rendered and not _PINYIN_TOKEN.fullmatch(rendered):
            return "unspeakable_text", "not tone-numbered pinyin"
        return None
    return text_problem(rendered, "en" if voice.startswith("en") else "yue")


_SSML = "{http://www.w3.org/2001/10/synthesis}"
_SSML_ELEMENTS = frozenset({f"{_SSML}speak", f"{_SSML}phoneme", f"{_SSML}break"})


def ssml_problem(document: str, lang: str) -> Problem:
    """Whether an SSML document is well formed, uses only our elements and readable text."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        return "unspeakable_text", f"SSML does not parse: {exc}"
    for element in root.iter():
        if element.tag not in _SSML_ELEMENTS:
            return "control_token_in_data", f"unexpected SSML element {element.tag}"
    return text_problem("".join(root.itertext()), lang)
