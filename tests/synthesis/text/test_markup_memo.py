"""What the text frontend precomputes per template and memoizes gives the same bytes as
the plain path, on many random values in every template.

- Segments: a template's sentences are cut once; a notice only places its values
  (``NoticeComposer._assemble_sentences``), held to ``_assemble`` + ``split_segments``.
- Values: a value already read in its slot is taken from the slot memo unchecked, held
  to a composer that keeps no memo (every value checked and read, the template
  rendered again), with values of several types repeating across notices.
- Markup: pieces are kept per inventory and pypinyin readings per word, held to the
  plain path (``lazy_pinyin`` on every span, every gap worked out again).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT
from pypinyin.seg.mmseg import seg

from synthesis.text import NoticeTextError
from synthesis.text.bench import COMPOUND, GIVEN, GIVEN_MORE, SURNAMES, make_notices
from synthesis.text.ir import MAX_SEGMENT_CHARS, Segment
from synthesis.text.pinyin import (
    HAN_RUN,
    NUMBER_READINGS,
    NameReader,
    _cut,
    number_reading,
    run_marked,
)
from synthesis.text.render.cosyvoice3 import (
    TokenInventory,
    render_cosyvoice3,
    render_cosyvoice3_uncached,
)
from tests.synthesis.text.samples import INCLUDE

_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
_NAMES = st.builds(
    lambda surname, given: surname + given,
    st.sampled_from([*SURNAMES, *COMPOUND]),
    st.text(alphabet=GIVEN + GIVEN_MORE, min_size=1, max_size=2)
    | st.text(alphabet=_HAN, min_size=1, max_size=3),
)
_AMOUNTS = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)
_DATES = st.dates().map(lambda day: day.isoformat())


@pytest.fixture(scope="module")
def inventory() -> TokenInventory:
    return TokenInventory.load(INCLUDE / "cosyvoice3" / "tokens", INCLUDE / "lexicons")


class _Forgets(dict):
    """A slot memo that keeps nothing: every value is checked and read again."""

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _general(composer, *notice):
    """The notice through ``_read_notice``, ``_assemble`` and ``split_segments`` alone."""
    composer._assemble_sentences = lambda *args: None
    memo, composer._slot_memo = composer._slot_memo, _Forgets()
    try:
        return composer.compose(*notice)
    finally:
        del composer._assemble_sentences  # the class's own again
        composer._slot_memo = memo


def _outcome(compose, *notice):
    try:
        return compose(*notice)
    except NoticeTextError as exc:
        return ("failed", exc.reason_code)


def _same_markup(notice, inventory: TokenInventory) -> None:
    for segment in notice.segments:
        assert render_cosyvoice3(segment, inventory) == render_cosyvoice3_uncached(
            segment, inventory
        ), segment


@_SETTINGS
@given(
    notice_type=st.sampled_from(
        ["repayment_reminder", "pension_arrival", "policy_renewal", "appointment_confirmation"]
    ),
    locale=st.sampled_from(["cmn", "cmn", "cmn", "yue", "en"]),
    name=_NAMES,
    amount=_AMOUNTS,
    day=_DATES,
    tail=st.integers(0, 9999),
    department=st.text(alphabet=_HAN, min_size=1, max_size=8)
    | st.text(alphabet=st.one_of(_HAN, st.sampled_from("。；！，?;： ")), min_size=1, max_size=90)
    | st.text(min_size=1, max_size=40),
)
def test_memoized_markup_equals_the_uncached_path(
    composer, inventory, notice_type, locale, name, amount, day, tail, department
) -> None:
    variables = {
        "repayment_reminder": {"amount": str(amount), "due_date": day, "card_tail": f"{tail:04d}"},
        "pension_arrival": {"amount": str(amount), "arrival_date": day},
        "policy_renewal": {
            "policy_no": f"P{tail:04d}A",
            "premium": str(amount),
            "expiry_date": day,
        },
        "appointment_confirmation": {
            "appointment_date": day,
            "appointment_time": f"{tail % 24}:{tail % 60:02d}",
            "department": department,
        },
    }[notice_type]
    context = {
        "organization": "招商银行",
        "customer_name": name,
        "confirm_key": "1",
        "optout_key": "9",
        "service_phone": "95555",
    }
    notice = (notice_type, locale, variables, context)
    composed = _outcome(composer.compose, *notice)
    assert composed == _outcome(lambda *n: _general(composer, *n), *notice)
    if not isinstance(composed, tuple):  # a refused value never reaches a renderer
        _same_markup(composed, inventory)


@_SETTINGS
@given(run=st.text(alphabet=_HAN, min_size=1, max_size=12) | st.text(min_size=1, max_size=12))
def test_word_memoized_reading_equals_lazy_pinyin(run: str) -> None:
    assert run_marked(run) == tuple(lazy_pinyin(run, style=Style.TONE))


def test_benchmark_notices_with_unique_names_mark_up_alike(composer, inventory) -> None:
    notices = make_notices(1500, seed=7, unique_names=True)
    assert len({context["customer_name"] for *_, context in notices}) == len(notices)
    for notice in notices:
        composed = composer.compose(*notice)
        assert composed == _general(composer, *notice)
        _same_markup(composed, inventory)
    # Warm memo, second pass: pieces served from it are still the same bytes.
    for notice in notices[:300]:
        _same_markup(composer.compose(*notice), inventory)


_REPEATED = st.sampled_from(
    ["1", 1, 1.0, True, "9", 9, "", "  ", None, "95555", 95555, "0", 0, [1], "*", "1。"]
)


@_SETTINGS
@given(
    notices=st.lists(
        st.tuples(
            st.sampled_from(["repayment_reminder", "pension_arrival"]),
            st.sampled_from(["cmn", "yue", "en"]),
            st.sampled_from(["3280.5", 3280.5, 3280, "3,280.50", "x", 0, -1, None, True]),
            st.sampled_from(["2026-12-03", "2026-13-01", 20261203, ""]),
            _REPEATED,
            _REPEATED,
            st.sampled_from(["王小明", "曾一", "王小明。", "", "招商银行"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_values_repeated_across_notices_compose_as_without_the_slot_memo(composer, notices) -> None:
    for notice_type, locale, amount, day, confirm, phone, name in notices:
        variables = {"amount": amount}
        variables["due_date" if notice_type == "repayment_reminder" else "arrival_date"] = day
        if notice_type == "repayment_reminder":
            variables["card_tail"] = confirm
        context = {
            "organization": "招商银行",
            "customer_name": name,
            "confirm_key": confirm,
            "optout_key": "9",
            "service_phone": phone,
        }
        notice = (notice_type, locale, variables, context)
        assert _outcome(composer.compose, *notice) == _outcome(
            lambda *n: _general(composer, *n), *notice
        ), notice


_PHRASE_NAMES = st.sampled_from(
    ["王府井", "张家口", "李白", "高山流水", "曾经沧海", "单于", "解放"]
)


@_SETTINGS
@given(name=_NAMES | _PHRASE_NAMES | st.text(alphabet=_HAN, min_size=2, max_size=5))
def test_a_name_segmented_once_reads_as_its_given_name_segmented_alone(composer, name) -> None:
    """The name reader takes the given name's reading from one segmentation of the whole
    name (shared with the markup's span); held to reading the given name on its own."""
    reader = NameReader(composer.lexicon)
    alone = NameReader(composer.lexicon)
    alone._given_marked = lambda *args: None  # the given name segmented on its own
    assert reader.read(name) == alone.read(name)
    assert run_marked(name) == tuple(lazy_pinyin(name, style=Style.TONE))


_PHRASES = sorted(key for key in PHRASES_DICT if HAN_RUN.fullmatch(key))
#: Beginnings of phrases: a run may hold (or end in) one that is no phrase itself.
_BEGINNINGS = st.builds(
    lambda phrase, size: phrase[:size], st.sampled_from(_PHRASES), st.integers(1, 4)
)


@_SETTINGS
@given(
    pieces=st.lists(
        st.sampled_from(_PHRASES) | _BEGINNINGS | st.text(alphabet=_HAN, min_size=1, max_size=2),
        min_size=1,
        max_size=6,
    ),
    front=st.integers(0, 3),
    back=st.integers(0, 3),
)
@example(pieces=["神经过"], front=0, back=0)  # a beginning, no phrase, a phrase in it
@example(pieces=["拉不下", "来"], front=0, back=1)
def test_the_phrase_cut_is_pypinyins(pieces, front, back) -> None:
    """Runs made of pypinyin's own phrases (cut into at either end or not, so a run may
    end in a phrase's beginning) and loose characters: the segmentation is the
    segmenter's, word for word."""
    joined = "".join(pieces)
    run = joined[front : len(joined) - back] or pieces[0]
    assert _cut(run) == list(seg.cut(run))


_NUMBER_WORDS = st.sampled_from(
    [*NUMBER_READINGS, "一百", "一点", "十一点", "一月", "年分", "一五一十"]
)


@_SETTINGS
@given(pieces=st.lists(_NUMBER_WORDS, min_size=1, max_size=12))
def test_a_run_of_number_characters_marks_up_as_pypinyin_reads_it(inventory, pieces) -> None:
    """Amounts, dates and digits skip pypinyin unless they hold a word it reads otherwise
    (一百 yì bǎi): held to ``lazy_pinyin`` on the whole run."""
    run = "".join(pieces)[:MAX_SEGMENT_CHARS]
    segment = Segment(run, "cmn", ((0, len(run), number_reading(run)),))
    assert render_cosyvoice3(segment, inventory) == render_cosyvoice3_uncached(segment, inventory)
