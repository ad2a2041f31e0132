"""Reason codes and the single exception the text frontend raises for bad input."""

from __future__ import annotations

#: Every reason code :class:`NoticeTextError` can carry, with what it means. The codes are
#: stable: the pipeline records them per notice in the dispatch ledger.
REASON_CODES: dict[str, str] = {
    "unknown_notice_type": "the notice type is not in include/notice_types.yaml",
    "unknown_locale": "no template for this locale (known: cmn, yue, en)",
    "missing_variable": "a variable the notice type or template needs is absent or null",
    "unknown_variable": "a variable not declared for this notice type was passed",
    "invalid_variable": "a value does not parse as its declared type or is out of range",
    "variable_too_long": "a value is longer than its max_length in the catalogue",
    "missing_context": "a caller identity field (organization, keys, service phone) is absent",
    "invalid_context": "a context field is malformed (e.g. a key that is not 0-9, * or #)",
    "empty_name": "the customer name is empty or blank",
    "invalid_name": "the customer name is not a plausible person name",
    "unsupported_characters": "control characters, emoji or private-use characters in a value",
    "text_too_long": "the composed text is longer than the catalogue's max_text_chars",
    "template_error": "the template failed to render for another reason",
    "empty_input": "an empty line was given to the command-line tool",
    "control_token_in_data": (
        "a value holds engine markup (CosyVoice3 <|...|> or [breath]-style tokens, espeak-ng "
        "[[...]] phonemes, SSML tags) that the markup policy refuses, or nothing else"
    ),
    "unspeakable_text": (
        "a segment would still hold a digit or symbol its engine cannot read after "
        "normalization (e.g. a symbol with no reading in include/lexicons/symbols.tsv)"
    ),
    "unsupported_script": (
        "a value is written in a script the engines do not read (Hangul, kana, Cyrillic ...)"
    ),
}


class NoticeTextError(ValueError):
    """A notice cannot be turned into speech text; permanent for that notice.

    :param reason_code: one of :data:`REASON_CODES`.
    :param detail: human-readable detail for logs (never contains a phone number).
    """

    def __init__(self, reason_code: str, detail: str) -> None:
        if reason_code not in REASON_CODES:
            raise ValueError(f"unknown reason code {reason_code!r}")
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.reason_code, self.detail))
