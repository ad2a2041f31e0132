"""Evaluate the text frontend on public test sets, with baselines in the same run.

    python -m synthesis.text.eval [--no-wetext] [--show-errors N]

Data: ``$VOICE_NOTIFY_EVAL_DIR`` (default ``tests/data/eval`` in the repository, with licences):
``tn/nemo/*.tsv`` and ``tn/paddlespeech/textnorm_test_cases.tsv`` (``written<TAB>spoken``),
``polyphone/cpp/{test,surname_chars_subset}.tsv`` (``sentence<TAB>index<TAB>pinyin<TAB>char``).
The data is read, never changed. Exit code 2 when it is absent.

Text normalization is scored per sentence after this canonicalization of both sides,
because these are equally correct readings that the references write differently:

- 两 = 二 (两千 / 二千), 幺 = 一 (the references never use 幺);
- 号 = 日 after a day-of-month numeral (三十号 / 三十日);
- an optional 零 before a single-digit minute or second (三点零五分 / 三点五分);
- punctuation and whitespace are ignored.

The normalizer runs with money style ``decimal`` (the references read 63.89元 as
六十三点八九元). Pinyin is scored on the one character each CPP line marks; ü is
written v on both sides, and the CPP tone-3 u: form is mapped to v.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from synthesis.text.lexicon import Lexicon
from synthesis.text.normalize import normalize_text
from synthesis.text.paths import EVAL_DIR_ENV, INCLUDE_DIR, cosyvoice3_tokens_dir, eval_dir
from synthesis.text.pinyin import TextReader, WordAnnotator, marked_to_tone3

TN_TARGET_CATEGORIES = ("cardinal", "date", "decimal", "fraction", "measure", "money", "time")

_DAY_HAO = re.compile(r"([一二三四五六七八九十])号")
_MINUTE_ZERO = re.compile(r"(?<=[点分])零(?=[一二三四五六七八九][分秒])")
_PUNCTUATION = re.compile(r"[\s,，。.!！?？、;；:：“”\"'‘’()（）]")


def canonical_tn(text: str) -> str:
    """Apply the documented canonicalization to a normalized sentence."""
    text = text.replace("两", "二").replace("幺", "一")
    text = _DAY_HAO.sub(r"\1日", text)
    text = _MINUTE_ZERO.sub("", text)
    return _PUNCTUATION.sub("", text)


@dataclass
class Score:
    correct: int = 0
    total: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.total if self.total else 0.0


def _tn_cases(path) -> list[tuple[str, str]]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            cases.append((fields[0], fields[1]))
    return cases


def _score_tn(cases, normalize: Callable[[str], str], errors: list, show: int) -> Score:
    score = Score()
    for written, spoken in cases:
        got = normalize(written)
        score.total += 1
        if canonical_tn(got) == canonical_tn(spoken):
            score.correct += 1
        elif len(errors) < show:
            errors.append(f"    {written} -> {got} (expected {spoken})")
    return score


def _wetext() -> Callable[[str], str] | None:
    try:
        from wetext import Normalizer
    except ImportError:
        return None
    normalizer = Normalizer(lang="zh", operator="tn")
    return normalizer.normalize


def evaluate_tn(root, use_wetext: bool, show: int) -> dict[str, tuple[Score, Score | None]]:
    """Per category: (ours, wetext baseline or None)."""
    baseline = _wetext() if use_wetext else None
    sets = {f"nemo/{p.stem}": p for p in sorted((root / "tn" / "nemo").glob("*.tsv"))}
    sets["paddlespeech"] = root / "tn" / "paddlespeech" / "textnorm_test_cases.tsv"
    results = {}
    for name, path in sets.items():
        cases = _tn_cases(path)
        errors: list[str] = []
        ours = _score_tn(cases, lambda text: normalize_text(text, "decimal"), errors, show)
        theirs = _score_tn(cases, baseline, [], 0) if baseline else None
        results[name] = (ours, theirs)
        for line in errors:
            print(f"  [{name}]{line}")
    return results


def _canonical_pinyin(syllable: str) -> str:
    return syllable.replace("u:", "v").replace("ü", "v")


def evaluate_cpp(root, show: int) -> dict[str, tuple[Score, Score]]:
    """Per CPP file: (ours, pypinyin alone)."""
    from pypinyin import Style, pinyin

    reader = TextReader(WordAnnotator(Lexicon.load(INCLUDE_DIR / "lexicons")))

    def plain(sentence: str) -> list[str]:
        per_char = pinyin(
            sentence,
            style=Style.TONE3,
            neutral_tone_with_five=True,
            errors=lambda chunk: [[char] for char in chunk],
        )
        return [item[0] for item in per_char]

    results = {}
    for name in ("test", "surname_chars_subset"):
        ours, baseline = Score(), Score()
        shown = 0
        path = root / "polyphone" / "cpp" / f"{name}.tsv"
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            sentence, index, gold = fields[0], int(fields[1]), _canonical_pinyin(fields[2])
            mine = reader.read(sentence)[index]
            mine = marked_to_tone3(mine) if mine else ""
            theirs = plain(sentence)
            base = _canonical_pinyin(theirs[index]) if len(theirs) == len(sentence) else ""
            ours.total += 1
            baseline.total += 1
            ours.correct += mine == gold
            baseline.correct += base == gold
            if mine != gold and shown < show:
                shown += 1
                print(f"  [cpp/{name}] {sentence[index]} in {sentence[:40]}: {mine} != {gold}")
        results[name] = (ours, baseline)
    return results


def evaluate_surname_table() -> Score:
    """Every surname in the table read by the composer's name reader as listed."""
    from synthesis.text.pinyin import NameReader

    lexicon = Lexicon.load(INCLUDE_DIR / "lexicons")
    names = NameReader(lexicon)
    score = Score()
    for surname, reading in lexicon.surnames.items():
        score.total += 1
        score.correct += names.read(surname + "明")[: len(surname)] == tuple(reading.split())
    return score


def evaluate_cosyvoice3_tokens(notices: int = 2000) -> tuple[int, int]:
    """(valid, emitted) tokens over synthetic notices and every surname in the table."""
    from synthesis.text.bench import make_notices
    from synthesis.text.composer import NoticeComposer
    from synthesis.text.render.cosyvoice3 import TokenInventory, render_cosyvoice3

    inventory = TokenInventory.load(cosyvoice3_tokens_dir(), INCLUDE_DIR / "lexicons")
    composer = NoticeComposer.load(INCLUDE_DIR)
    batch = make_notices(notices)
    for surname in composer.lexicon.surnames:
        notice_type, _, variables, context = batch[0]
        batch.append((notice_type, "cmn", variables, {**context, "customer_name": surname + "明"}))
    valid = emitted = 0
    for notice_type, locale, variables, context in batch:
        for segment in composer.compose(notice_type, locale, variables, context).segments:
            for token in re.findall(r"\[([^\]]+)\]", render_cosyvoice3(segment, inventory)):
                emitted += 1
                valid += token in inventory.pinyin or token in inventory.cmu
    return valid, emitted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.text.eval", description=__doc__)
    parser.add_argument("--no-wetext", action="store_true", help="skip the wetext baseline")
    parser.add_argument("--show-errors", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    root = eval_dir()
    if not (root / "tn").is_dir() or not (root / "polyphone" / "cpp").is_dir():
        print(
            f"evaluation data not found in {root}; set {EVAL_DIR_ENV} to the folder holding "
            "tn/ and polyphone/",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    print(f"evaluation data: {root}")
    print("\ntext normalization (sentence accuracy, canonicalized; see module docstring)")
    print(f"  {'set':<22}{'n':>5}{'ours %':>9}{'wetext %':>10}  target")
    for name, (ours, theirs) in evaluate_tn(root, not args.no_wetext, args.show_errors).items():
        target = name == "paddlespeech" or name.split("/")[-1] in TN_TARGET_CATEGORIES
        baseline = f"{theirs.percent:10.1f}" if theirs else f"{'-':>10}"
        print(
            f"  {name:<22}{ours.total:>5}{ours.percent:9.1f}{baseline}  {'>=95' if target else ''}"
        )
    print("\npolyphone pinyin (CPP, marked character)")
    print(f"  {'set':<22}{'n':>6}{'ours %':>9}{'pypinyin %':>12}")
    for name, (ours, baseline) in evaluate_cpp(root, args.show_errors).items():
        print(f"  {name:<22}{ours.total:>6}{ours.percent:9.2f}{baseline.percent:12.2f}")
    surnames = evaluate_surname_table()
    print(f"\nsurname table: {surnames.correct}/{surnames.total} ({surnames.percent:.1f}%)")
    valid, emitted = evaluate_cosyvoice3_tokens()
    share = 100.0 * valid / emitted if emitted else 0.0
    print(f"CosyVoice3 tokens valid: {valid}/{emitted} ({share:.1f}%)")
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
