"""SSML for gateway TTS: ambiguous readings as x-pinyin ``<phoneme>``, pauses as breaks."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from synthesis.text.ir import Segment
from synthesis.text.pinyin import marked_to_tone3, run_marked

XML_LANG = {"cmn": "zh-CN", "yue": "zh-HK", "en": "en-US"}


def render_ssml(segment: Segment) -> str:
    """One ``<speak>`` document for a segment.

    Override spans whose reading differs from the common one (曾 zēng, not céng) are
    wrapped in
    ``<phoneme alphabet="x-pinyin" ph="zeng1 xiao3 ming2">``; a pause after the segment
    becomes ``<break time="400ms"/>``.
    """
    text = segment.text
    body: list[str] = []
    position = 0
    for start, end, reading in segment.overrides:
        body.append(escape(text[position:start]))
        span = text[start:end]
        if run_marked(span) != tuple(reading.split()):
            ph = " ".join(marked_to_tone3(syllable) for syllable in reading.split())
            body.append(f'<phoneme alphabet="x-pinyin" ph={quoteattr(ph)}>{escape(span)}</phoneme>')
        else:
            body.append(escape(span))
        position = end
    body.append(escape(text[position:]))
    if segment.pause_after_ms:
        body.append(f'<break time="{segment.pause_after_ms}ms"/>')
    lang = XML_LANG[segment.lang]
    return (
        f'<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="{lang}">'
        + "".join(body)
        + "</speak>"
    )


def render_ssml_document(segments: tuple[Segment, ...] | list[Segment]) -> str:
    """One ``<speak>`` document for several segments of the same language."""
    if not segments:
        raise ValueError("no segments")
    inner = [render_ssml(segment) for segment in segments]
    head = inner[0][: inner[0].index(">") + 1]
    return head + "".join(doc[len(head) : -len("</speak>")] for doc in inner) + "</speak>"
