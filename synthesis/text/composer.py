"""NoticeComposer: notice type + locale + CRM values -> normalized, annotated speech segments."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    UndefinedError,
)
from jinja2.sandbox import SandboxedEnvironment

from synthesis.text.catalogue import Catalogue, VariableSpec
from synthesis.text.errors import NoticeTextError
from synthesis.text.ir import MAX_SEGMENT_CHARS, ComposedNotice, Segment
from synthesis.text.lexicon import Lexicon
from synthesis.text.normalize import normalize_cached
from synthesis.text.normalize.english import normalize_en
from synthesis.text.pinyin import NameReader, WordAnnotator
from synthesis.text.readers import Readers, check_characters
from synthesis.text.speakable import check_segment
from synthesis.text.split import SENTENCE_PAUSE_MS, make_segment, split_segments

# Values enter the template as private-use markers (rejected in input), so the composer
# knows exactly where each value sits in the rendered text.
_MARK_OPEN = "\ue000"
_MARKER = re.compile(_MARK_OPEN + "(.)")
_MARK_BASE = 0xE100
_ASCII_GAP = re.compile(r"(?<=[A-Za-z0-9])\s+(?=[A-Za-z0-9])")
_WHITESPACE = re.compile(r"\s+")
_TO_TRADITIONAL = str.maketrans("两万亿点负号", "兩萬億點負號")

Override = tuple[int, int, str]
#: A template piece: (value slot, "", ()) or (-1, normalized literal, its overrides).
Piece = tuple[int, str, tuple[Override, ...]]
#: A template's sentences (Mandarin and Cantonese): the pieces of each, literals cut
#: after their sentence marks, as ``split_segments`` cuts the composed text.
Sentences = tuple[tuple[Piece, ...], ...]
#: The slot of a sentence's only piece when the sentence has no value: ``(_FIXED, body,
#: its overrides, unstripped length, its segments by pause)``, the sentence's segment
#: body made in advance and its segment made once (no memo looked up per notice).
_FIXED = -2
_SENTENCE_MARK = re.compile("[。！？!?；;]")
#: A value slot's reading, remembered: (the value's type, its reading, has a sentence mark).
SlotReading = tuple[type, tuple[str, tuple[Override, ...]], bool]
_SLOT_MEMO_LIMIT = 16384


class NoticeComposer:
    """Composes due notices into speech segments. Build once with :meth:`load`, then reuse.

    Each template is rendered once per locale with opaque value markers (so templates
    hold wording, not logic); its literal text is normalized once; typed values are read
    by their catalogue type (money, date, code ...) and memoized, as are name readings.
    Composing is then cheap for tens of thousands of notices (see ``synthesis.text.bench``).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        lexicon: Lexicon,
        environment: SandboxedEnvironment,
        money_style: str,
        data_markup: str = "strip",
    ) -> None:
        self.catalogue = catalogue
        self.lexicon = lexicon
        self.money_style = money_style
        self._names = NameReader(lexicon)
        self._words = WordAnnotator(lexicon)
        self._readers = Readers(self._names, self._words, money_style, data_markup)
        self._specs = {
            name: {s.name: s for s in specs} for name, specs in catalogue.notice_types.items()
        }
        self._templates: dict[tuple[str, str], Template] = {}
        for locale in catalogue.locales:
            for notice_type in catalogue.notice_types:
                name = f"{locale}/{notice_type}.j2"
                try:
                    self._templates[(locale, notice_type)] = environment.get_template(name)
                except TemplateError as exc:
                    raise ValueError(f"template {name}: {exc}") from exc
        # What introduces each further notice of a merged call (``compose_call``).
        self._next_notice: dict[str, Template] = {}
        for locale in catalogue.locales:
            try:
                self._next_notice[locale] = environment.get_template(f"{locale}/_next_notice.j2")
            except TemplateNotFound:
                continue  # this locale has no merged calls
            except TemplateError as exc:
                raise ValueError(f"template {locale}/_next_notice.j2: {exc}") from exc
        # The readings of values, per (locale, type) and value slot: value -> (its type,
        # reading, has a sentence mark). A value seen in a slot was checked there already.
        # Names, amounts and dates are new in most notices; organization, keys, phone and
        # the like recur. Values are read without a memo elsewhere (merged calls).
        self._slot_memo: dict[tuple[str, str], tuple[dict[object, SlotReading], ...]] = {}
        self._literal = lru_cache(maxsize=4096)(self._literal_uncached)
        self._skeletons: dict[tuple[str, str], list[Piece]] = {}
        self._sentences: dict[tuple[str, str], Sentences] = {}

    @classmethod
    def load(
        cls,
        include_dir: pathlib.Path,
        money_style: str = "yuan-jiao-fen",
        data_markup: str = "strip",
    ) -> NoticeComposer:
        """Load the catalogue, templates and lexicons under ``include_dir``.

        :param include_dir: the repository's ``include/`` folder.
        :param money_style: ``yuan-jiao-fen`` (三千二百八十元五角) or ``decimal``
            (三千二百八十点五元).
        :param data_markup: engine markup found in free-text values (``<|endofprompt|>``,
            ``[breath]``, ``[[...]]``, SSML tags): ``"strip"`` removes it (a value left with
            nothing else fails with ``control_token_in_data``), ``"reject"`` fails the notice.
        """
        include_dir = pathlib.Path(include_dir)
        catalogue = Catalogue.load(include_dir / "notice_types.yaml")
        lexicon = Lexicon.load(include_dir / "lexicons")
        environment = SandboxedEnvironment(
            loader=FileSystemLoader(include_dir / "templates"),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            cache_size=-1,
        )
        return cls(catalogue, lexicon, environment, money_style, data_markup)

    def clear_caches(self) -> None:
        """Forget memoized readings (for benchmarks and after editing lexicons)."""
        for cached in (
            self._literal,
            self._names.read,
            self._words.spans,
            make_segment,
        ):
            cached.cache_clear()
        self._slot_memo.clear()
        self._skeletons.clear()
        self._sentences.clear()

    @property
    def notice_types(self) -> frozenset[str]:
        """The notice types the catalogue declares."""
        return frozenset(self.catalogue.notice_types)

    def variable_types(self, notice_type: str) -> dict[str, str]:
        """Variable name -> type for ``notice_type``."""
        specs = self._specs.get(notice_type)
        if specs is None:
            raise NoticeTextError("unknown_notice_type", repr(notice_type))
        return {name: spec.type for name, spec in specs.items()}

    def compose(
        self,
        notice_type: str,
        locale: str,
        variables: Mapping[str, object],
        context: Mapping[str, str],
    ) -> ComposedNotice:
        """Render, normalize, annotate and split one notice.

        :param variables: the notice row's values (names as in ``notice_types.yaml``).
        :param context: ``organization``, ``customer_name``, ``confirm_key``, ``optout_key``,
            ``service_phone``.
        :raises NoticeTextError: for any bad input; see :data:`REASON_CODES`.
        """
        key = (locale, notice_type)
        memo = self._slot_memo.get(key)
        if memo is None:  # the first notice of its type and locale (or an unknown one)
            readings: list[tuple[str, tuple[Override, ...]]] = []
            template, _ = self._read_notice(notice_type, locale, variables, context, readings)
            memo = self._prepare(template, locale, notice_type)
            marked = any(_SENTENCE_MARK.search(text) for text, _ in readings)
            fresh = -1
        else:
            readings, marked, fresh = self._read_remembered(
                notice_type, locale, variables, context, memo
            )
        if locale != "en" and not marked:
            composed = self._assemble_sentences(
                notice_type, locale, self._sentences[key], readings, fresh
            )
            if composed is not None:
                return composed
        return self._assemble(notice_type, locale, self._skeletons[key], readings)

    def compose_call(
        self, locale: str, parts: Sequence[tuple[str, Mapping[str, object], Mapping[str, str]]]
    ) -> ComposedNotice:
        """Several notices of one customer as the text of one call (a merged call).

        The first notice's ``disclosure`` and ``greeting`` blocks, its ``body``; for each
        further notice the locale's ``_next_notice.j2`` and that notice's ``body``; then
        the first notice's ``closing``. Each part brings its own values and context (its
        organization, its confirm key).

        :param parts: ``(notice_type, variables, context)`` of each notice, the lead first
        :raises NoticeTextError: as :meth:`compose`; ``template_error`` when a template
            lacks the blocks or the locale has no ``_next_notice.j2``
        """
        if len(parts) == 1:
            notice_type, variables, context = parts[0]
            return self.compose(notice_type, locale, variables, context)
        readings: list[tuple[str, tuple[Override, ...]]] = []
        rendered: list[str] = []
        closing = ""
        try:
            for index, (notice_type, variables, context) in enumerate(parts):
                template, markers = self._part(notice_type, locale, variables, context, readings)
                if index == 0:
                    rendered += [_block(template, name, markers) for name in _OPENING]
                    closing = _block(template, "closing", markers)
                else:
                    rendered.append(self._next_notice[locale].render(**markers))
                    rendered.append(_block(template, "body", markers))
        except KeyError as exc:
            raise NoticeTextError("template_error", f"merged call: no {exc} for {locale}") from None
        except UndefinedError as exc:
            raise NoticeTextError("missing_variable", str(exc)[:200]) from None
        except TemplateError as exc:
            raise NoticeTextError("template_error", str(exc)[:200]) from None
        skeleton = self._pieces("\n".join(p.strip("\n") for p in [*rendered, closing]), locale)
        # Each notice may be as long as a notice alone.
        limit = self.catalogue.max_text_chars * len(parts)
        return self._assemble(parts[0][0], locale, skeleton, readings, limit)

    def _part(
        self,
        notice_type: str,
        locale: str,
        variables: Mapping[str, object],
        context: Mapping[str, str],
        readings: list[tuple[str, tuple[Override, ...]]],
    ) -> tuple[Template, dict[str, str]]:
        """One notice of a merged call: its readings appended to ``readings``, its
        template, and the markers of its values (numbered after the earlier parts')."""
        first = len(readings)
        template, specs = self._read_notice(notice_type, locale, variables, context, readings)
        names = [*specs, *(spec.name for spec in self.catalogue.context)]
        markers = {
            name: _MARK_OPEN + chr(_MARK_BASE + first + index) for index, name in enumerate(names)
        }
        return template, markers

    def _read_remembered(
        self,
        notice_type: str,
        locale: str,
        variables: Mapping[str, object],
        context: Mapping[str, str],
        memo: tuple[dict[object, SlotReading], ...],
    ) -> tuple[list[tuple[str, tuple[Override, ...]]], bool, int]:
        """What :meth:`_read_notice` reads, a value already checked in its slot taken from
        ``memo`` without checking it again; whether any reading has a sentence mark; and
        the slots whose value was not in the memo (bit ``1 << slot``).

        A value not seen in its slot goes through :meth:`_add`, so errors and their order
        are :meth:`_read_notice`'s.
        """
        specs = self._specs[notice_type]
        if not variables.keys() <= specs.keys():
            unknown = set(variables) - set(specs)
            raise NoticeTextError("unknown_variable", ", ".join(sorted(map(str, unknown)))[:200])
        readings: list[tuple[str, tuple[Override, ...]]] = []
        marked = False
        fresh = 0
        slot = 0
        for source, entries in ((variables, specs.values()), (context, self.catalogue.context)):
            for spec in entries:
                value = source.get(spec.name)
                table = memo[slot]
                slot += 1
                try:
                    known = table.get(value)
                except TypeError:  # unhashable: not a value any reader takes
                    known = None
                if known is not None and known[0] is type(value):
                    readings.append(known[1])
                    marked = marked or known[2]
                    continue
                fresh |= 1 << (slot - 1)
                missing = "missing_variable"
                if source is context:
                    missing = "empty_name" if spec.type == "person_name" else "missing_context"
                self._add(readings, spec, value, locale, missing)
                reading = readings[-1]
                has_mark = _SENTENCE_MARK.search(reading[0]) is not None
                marked = marked or has_mark
                if len(table) >= _SLOT_MEMO_LIMIT:
                    table.clear()  # unique values (names, amounts) would grow it without end
                table[value] = (type(value), reading, has_mark)
        return readings, marked, fresh

    def _read_notice(
        self,
        notice_type: str,
        locale: str,
        variables: Mapping[str, object],
        context: Mapping[str, str],
        readings: list[tuple[str, tuple[Override, ...]]],
    ) -> tuple[Template, Mapping[str, VariableSpec]]:
        """A notice's template and variable specs, its values checked and read (appended
        to ``readings``: the variables in catalogue order, then the context)."""
        specs = self._specs.get(notice_type)
        if specs is None:
            raise NoticeTextError("unknown_notice_type", repr(notice_type)[:80])
        template = self._templates.get((locale, notice_type))
        if template is None:
            raise NoticeTextError("unknown_locale", repr(locale)[:80])
        unknown = set(variables) - set(specs)
        if unknown:
            raise NoticeTextError("unknown_variable", ", ".join(sorted(map(str, unknown)))[:200])
        for spec in specs.values():
            self._add(readings, spec, variables.get(spec.name), locale, "missing_variable")
        for spec in self.catalogue.context:
            missing = "empty_name" if spec.type == "person_name" else "missing_context"
            self._add(readings, spec, context.get(spec.name), locale, missing)
        return template, specs

    def _assemble_sentences(
        self,
        notice_type: str,
        locale: str,
        sentences: Sentences,
        readings: list[tuple[str, tuple[Override, ...]]],
        fresh: int = -1,
    ) -> ComposedNotice | None:
        """The segments of a notice from its template's sentences: only the values are
        placed; where the template's sentence marks cut is known in advance.

        :param fresh: the slots whose values are new (bit ``1 << slot``): a sentence with
            one is made without :func:`make_segment`'s memo, which it would only churn.

        What ``_assemble`` and ``split_segments`` make of the same notice, in the common
        case, for readings without a sentence mark (the caller checks); None (use them)
        when a sentence is longer than a segment (it is then cut at clauses).
        """
        # body, overrides, recurs, the segments a sentence without values has made
        bodies: list[tuple[str, tuple[Override, ...], bool, dict[int, Segment] | None]] = []
        total = 0
        for sentence in sentences:
            if sentence[0][0] == _FIXED:  # no value in it: made once with the template
                _, body, own, length, made = sentence[0]
                total += length
                if body:
                    bodies.append((body, own, True, made))
                continue
            parts: list[str] = []
            overrides: list[Override] = []
            offset = 0
            recurs = True
            for slot, text, spans in sentence:
                if slot >= 0:
                    text, spans = readings[slot]
                    if fresh >> slot & 1:
                        recurs = False
                if spans:
                    if offset:
                        overrides += [(offset + a, offset + b, r) for a, b, r in spans]
                    else:
                        overrides += spans
                parts.append(text)
                offset += len(text)
            total += offset
            if offset > MAX_SEGMENT_CHARS:
                return None
            raw = "".join(parts)
            body = raw.strip()
            if not body:
                continue
            lead = len(raw) - len(raw.lstrip())
            if lead:
                overrides = [(a - lead, b - lead, r) for a, b, r in overrides]
            bodies.append((body, tuple(overrides), recurs, None))
        if total > self.catalogue.max_text_chars:
            raise NoticeTextError(
                "text_too_long", f"{total} > {self.catalogue.max_text_chars} characters"
            )
        last = len(bodies) - 1
        segments: list[Segment] = []
        for index, (body, own, recurs, made) in enumerate(bodies):
            pause = SENTENCE_PAUSE_MS if index < last else 0
            if made is None:
                segments.append(
                    (make_segment if recurs else _new_segment)(body, locale, own, pause)
                )
                continue
            segment = made.get(pause)
            if segment is None:
                segment = made[pause] = make_segment(body, locale, own, pause)
            segments.append(segment)
        display_text = "".join(segment.text for segment in segments)
        return ComposedNotice(notice_type, locale, display_text, tuple(segments))

    def _prepare(
        self, template: Template, locale: str, notice_type: str
    ) -> tuple[dict[object, SlotReading], ...]:
        """A type and locale's skeleton, its sentences and an empty memo of its slots."""
        skeleton = self._skeleton(template, locale, notice_type)
        self._sentences[(locale, notice_type)] = _sentences(skeleton)
        slots = len(self._specs[notice_type]) + len(self.catalogue.context)
        memo = self._slot_memo[(locale, notice_type)] = tuple({} for _ in range(slots))
        return memo

    def _skeleton(self, template: Template, locale: str, notice_type: str) -> list[Piece]:
        """Render the template once with value markers; literals normalized once.

        Templates see every value as an opaque marker, so the rendered text is the same
        for every notice of a type and locale: what varies is only the values.
        """
        names = [*self._specs[notice_type], *(spec.name for spec in self.catalogue.context)]
        markers = {name: _MARK_OPEN + chr(_MARK_BASE + index) for index, name in enumerate(names)}
        try:
            rendered = template.render(**markers)
        except UndefinedError as exc:
            raise NoticeTextError("missing_variable", str(exc)[:200]) from None
        except TemplateError as exc:
            raise NoticeTextError("template_error", str(exc)[:200]) from None
        pieces = self._pieces(rendered, locale)
        self._skeletons[(locale, notice_type)] = pieces
        return pieces

    def _pieces(self, rendered: str, locale: str) -> list[Piece]:
        """Rendered text with value markers as pieces: value slots and normalized literals."""
        pieces: list[Piece] = []
        parts = _MARKER.split(rendered)
        for index, part in enumerate(parts):
            if index % 2:
                pieces.append((ord(part) - _MARK_BASE, "", ()))
                continue
            if index == 0:
                part = part.lstrip()
            if index == len(parts) - 1:
                part = part.rstrip()
            text, spans = self._literal(part, locale)
            if text:
                pieces.append((-1, text, spans))
        return pieces

    def _add(
        self,
        readings: list[tuple[str, tuple[Override, ...]]],
        spec: VariableSpec,
        value: object,
        locale: str,
        missing_reason: str,
    ) -> None:
        kind = type(value)
        if kind is str:
            if not value.strip():
                raise NoticeTextError(missing_reason, spec.name)
            check_characters(spec.name, value)
            length = len(value)
        elif kind is int or kind is float:
            length = len(str(value))
        elif value is None:
            raise NoticeTextError(missing_reason, spec.name)
        else:
            raise NoticeTextError("invalid_variable", f"{spec.name}: {kind.__name__}")
        if length > spec.max_length:
            raise NoticeTextError("variable_too_long", f"{spec.name}: {length} > {spec.max_length}")
        readings.append(self._readers.read(spec.name, spec.type, value, locale))

    def _literal_uncached(self, literal: str, locale: str) -> tuple[str, tuple[Override, ...]]:
        if locale == "en":
            return normalize_en(_WHITESPACE.sub(" ", literal)), ()
        compact = _WHITESPACE.sub("", _ASCII_GAP.sub("\x00", literal)).replace("\x00", " ")
        text = normalize_cached(compact, self.money_style)
        if locale == "yue":
            return text.translate(_TO_TRADITIONAL), ()
        return text, self._words.spans(text)

    def _assemble(
        self,
        notice_type: str,
        locale: str,
        skeleton: list[Piece],
        readings: list[tuple[str, tuple[Override, ...]]],
        limit: int | None = None,
    ) -> ComposedNotice:
        limit = limit or self.catalogue.max_text_chars
        parts: list[str] = []
        overrides: list[Override] = []
        protected: list[tuple[int, int]] = []
        offset = 0
        for slot, text, spans in skeleton:
            if slot >= 0:
                text, spans = readings[slot]
                protected.append((offset, offset + len(text)))
            if spans:
                overrides.extend((offset + a, offset + b, r) for a, b, r in spans)
            parts.append(text)
            offset += len(text)
        full_text = "".join(parts)
        if len(full_text) > limit:
            raise NoticeTextError("text_too_long", f"{len(full_text)} > {limit} characters")
        segments = split_segments(full_text, overrides, protected, locale)
        joiner = " " if locale == "en" else ""
        display_text = joiner.join(segment.text for segment in segments)
        return ComposedNotice(notice_type, locale, display_text, segments)


#: The blocks of the lead notice that open a merged call, in order.
_OPENING = ("disclosure", "greeting", "body")


def _new_segment(text: str, lang: str, overrides: tuple[Override, ...], pause: int) -> Segment:
    """What :func:`make_segment` makes, without remembering it."""
    return check_segment(Segment(text=text, lang=lang, overrides=overrides, pause_after_ms=pause))


def _block(template: Template, name: str, markers: Mapping[str, str]) -> str:
    """One block of a notice template rendered alone (``KeyError``: no such block)."""
    render = template.blocks[name]
    return "".join(render(template.new_context(dict(markers))))


def _sentences(skeleton: list[Piece]) -> Sentences:
    """A skeleton cut after every sentence mark of its literals (values are whole)."""
    sentences: list[tuple[Piece, ...]] = []
    current: list[Piece] = []
    for slot, text, spans in skeleton:
        if slot >= 0:
            current.append((slot, text, spans))
            continue
        start = 0
        for match in _SENTENCE_MARK.finditer(text):
            end = match.end()
            current.append(_literal_part(text, spans, start, end))
            sentences.append(tuple(current))
            current, start = [], end
        if start < len(text):
            current.append(_literal_part(text, spans, start, len(text)))
    if current:
        sentences.append(tuple(current))
    return tuple(_fixed(sentence) for sentence in sentences)


def _fixed(sentence: tuple[Piece, ...]) -> tuple[Any, ...]:
    """A sentence of literals only, as one ``_FIXED`` entry; others unchanged."""
    if any(slot >= 0 for slot, _, _ in sentence):
        return sentence
    raw = "".join(text for _, text, _ in sentence)
    overrides: list[Override] = []
    offset = 0
    for _, text, spans in sentence:
        overrides.extend((offset + a, offset + b, r) for a, b, r in spans)
        offset += len(text)
    lead = len(raw) - len(raw.lstrip())
    own = tuple((a - lead, b - lead, r) for a, b, r in overrides)
    made: dict[int, Segment] = {}  # its segment by pause, made by the first notice
    return ((_FIXED, raw.strip(), own, len(raw), made),)


def _literal_part(text: str, spans: tuple[Override, ...], start: int, end: int) -> Piece:
    # Overrides cover Han characters only: none straddles a sentence mark.
    own = tuple((a - start, b - start, r) for a, b, r in spans if start <= a and b <= end)
    return (-1, text[start:end], own)
