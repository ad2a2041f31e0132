"""Golden files: every notice template in every locale, as text and as each engine's input.

``tests/data/text/golden/<notice type>.<locale>.txt`` holds, per segment, the spoken
text, the CosyVoice3 markup, the espeak-ng input and the SSML, for the sample variables
of ``samples.ALL_NOTICES``. A change to a template, a normalization rule, a lexicon or a
renderer shows here as a diff a person reads. After a deliberate change, rewrite them
with ``VOICE_NOTIFY_UPDATE_GOLDEN=1 pytest tests/synthesis/text/test_template_golden.py``
and review the diff.
"""

from __future__ import annotations

import os

import pytest

from synthesis.text import TokenInventory, render_cosyvoice3, render_espeak, render_ssml
from synthesis.text.paths import cosyvoice3_tokens_dir
from tests.synthesis.text.samples import ALL_NOTICES, DATA, INCLUDE

GOLDEN = DATA / "golden"
LOCALES = ("cmn", "yue", "en")
CASES = [(notice_type, locale) for notice_type in ALL_NOTICES for locale in LOCALES]


@pytest.fixture(scope="module")
def inventory() -> TokenInventory:
    return TokenInventory.load(cosyvoice3_tokens_dir(), INCLUDE / "lexicons")


def _rendered(composer, context, inventory, notice_type: str, locale: str) -> str:
    notice = composer.compose(notice_type, locale, ALL_NOTICES[notice_type], context)
    title = f"# {notice_type} ({locale}), variables {sorted(ALL_NOTICES[notice_type])}"
    return _golden_text(title, notice.segments, inventory)


def _golden_text(title: str, segments, inventory) -> str:
    """Per segment: the spoken text and each engine's input."""
    lines = [title]
    for n, segment in enumerate(segments, start=1):
        voice, espeak_text = render_espeak(segment)
        lines += [
            f"[{n}] text:      {segment.text}",
            f"[{n}] cosyvoice: {render_cosyvoice3(segment, inventory)}",
            f"[{n}] espeak:    {voice} | {espeak_text}",
            f"[{n}] ssml:      {render_ssml(segment)}",
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("notice_type", "locale"), CASES, ids=[f"{t}.{lo}" for t, lo in CASES])
def test_every_template_renders_as_its_golden_file(
    composer, context, inventory, notice_type: str, locale: str
) -> None:
    rendered = _rendered(composer, context, inventory, notice_type, locale)
    path = GOLDEN / f"{notice_type}.{locale}.txt"
    if os.environ.get("VOICE_NOTIFY_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.is_file(), f"no golden file {path.name}: run with VOICE_NOTIFY_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(encoding="utf-8")


# A merged call (one call, two notices of one customer): the lead's disclosure, greeting
# and body, the locale's _next_notice.j2, the second notice's body with the second
# confirm key, the lead's closing.
MERGED = ("repayment_reminder", "policy_renewal")


def _merged(composer, context, inventory, locale: str) -> str:
    parts = [
        (notice_type, ALL_NOTICES[notice_type], {**context, "confirm_key": key})
        for notice_type, key in zip(MERGED, ("1", "2"), strict=True)
    ]
    notice = composer.compose_call(locale, parts)
    return _golden_text(
        f"# merged call {' + '.join(MERGED)} ({locale})", notice.segments, inventory
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_a_merged_call_renders_as_its_golden_file(composer, context, inventory, locale) -> None:
    rendered = _merged(composer, context, inventory, locale)
    path = GOLDEN / f"merged.{'+'.join(MERGED)}.{locale}.txt"
    if os.environ.get("VOICE_NOTIFY_UPDATE_GOLDEN") == "1":
        path.write_text(rendered, encoding="utf-8")
    assert path.is_file(), f"no golden file {path.name}: run with VOICE_NOTIFY_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(encoding="utf-8")
    # One disclosure and one opt-out, each notice's confirm key once.
    text = composer.compose_call(
        locale,
        [
            (t, ALL_NOTICES[t], {**context, "confirm_key": k})
            for t, k in zip(MERGED, "12", strict=True)
        ],
    ).display_text
    alone = composer.compose(MERGED[0], locale, ALL_NOTICES[MERGED[0]], context).display_text
    first_sentence = alone[: alone.index("." if locale == "en" else "。") + 1]
    assert text.startswith(first_sentence) and text.count(first_sentence) == 1


def test_every_template_has_a_golden_file() -> None:
    templates = {(path.stem, path.parent.name) for path in (INCLUDE / "templates").rglob("*.j2")}
    notices = {(stem, locale) for stem, locale in templates if not stem.startswith("_")}
    assert notices == set(CASES)
    # The merged call's connector, in every locale, is covered by the merged golden files.
    assert {(stem, locale) for stem, locale in templates if stem.startswith("_")} == {
        ("_next_notice", locale) for locale in LOCALES
    }
