"""Evaluate the text frontend on public test sets, with baselines in the same run.

    python -m synthesis.text.eval [--no-wetext] [--misses N] [--only-tn]

Data: ``$VOICE_NOTIFY_EVAL_DIR`` (default ``tests/data/eval`` in the repository, with licences).
Every ``tn/<source>/*.tsv`` is a text-normalization set, one case a line:
``written<TAB>spoken[<TAB>category]``; the category defaults to the file name (without a
``test_cases_`` prefix), so a new folder of public cases is picked up as it is. Polyphones:
``polyphone/cpp/{test,surname_chars_subset}.tsv`` (``sentence<TAB>index<TAB>pinyin<TAB>char``),
when present. The surname golden file is ``tests/data/text/surnames.txt``. The data is read,
never changed. Exit code 2 when there is no ``tn/`` folder.

Text normalization is scored per sentence after this canonicalization of both sides,
because these are equally correct readings that the references write differently:

- 两 = 二 (两千 / 二千), 幺 = 一 (not every reference uses 幺);
- 号 = 日 after a day-of-month numeral (三十号 / 三十日);
- an optional 零 before a single-digit minute or second (三点零五分 / 三点五分);
- 人民币 = 元 after a number (¥5: 五人民币 / 五元);
- 分 after the minutes of a clock time is optional (八点三十分 / 八点三十);
- 零一十 = 零十 inside a number (一百亿零一十万 / 一百亿零十万);
- a reference's time followed by am/pm is read as the time after 上午/下午 (三点am is
  上午三点); our output is not given that grace: am/pm must be spoken;
- punctuation, whitespace and Latin letter case are ignored.

The normalizer runs with money style ``decimal`` (the references read 63.89元 as
六十三点八九元). Pinyin is scored on the one character each CPP line marks; ü is
written v on both sides, and the CPP tone-3 u: form is mapped to v.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from synthesis.text.lexicon import Lexicon
from synthesis.text.normalize import normalize_text
from synthesis.text.paths import (
    EVAL_DIR_ENV,
    INCLUDE_DIR,
    REPO_ROOT,
    cosyvoice3_tokens_dir,
    eval_dir,
)
from synthesis.text.pinyin import NameReader, TextReader, WordAnnotator, marked_to_tone3

#: Categories that are not text normalization for speech (capitalizing abbreviations).
TN_NON_TARGET_CATEGORIES = frozenset({"whitelist"})
TN_TARGET_PERCENT = 95.0
#: File names that are not category names: mixed sentences, another name for a category.
_CATEGORY_ALIASES = {"textnorm_test_cases": "sentences", "number": "cardinal", "sport": "math"}
SURNAME_GOLDEN = REPO_ROOT / "tests" / "data" / "text" / "surnames.txt"

_DAY_HAO = re.compile(r"([一二三四五六七八九十])号")
_MINUTE_ZERO = re.compile(r"(?<=[点分])零(?=[一二三四五六七八九][分秒])")
_ZERO_TEN = re.compile(r"零一十")
_MINUTE_FEN = re.compile(
    r"(?<=点)(零[一二三四五六七八九]|[一二三四五]?十[一二三四五六七八九]?)分(?![钟之])"
)
_RMB = re.compile(r"(?<=[零一二三四五六七八九十百千万亿])人民币")
_NUMERAL = "零一二三四五六七八九十百"
_AM_PM = re.compile(
    rf"([{_NUMERAL}]{{1,4}}点(?:[{_NUMERAL}差]{{1,5}}分)?(?:[{_NUMERAL}]{{1,4}}秒)?)"
    r"\s?([ap])\.?m\.?",
    re.IGNORECASE,
)
_PUNCTUATION = re.compile(r"[\s,，。.!！?？、;；:：“”\"'‘’()（）]")


def _am_pm(match: re.Match[str]) -> str:
    return ("上午" if match.group(2).lower() == "a" else "下午") + match.group(1)


def canonical_tn(text: str, *, reference: bool = False) -> str:
    """Apply the documented canonicalization to a normalized sentence.

    :param reference: the text is a reference reading; only there is a time followed by
        am/pm taken as said with 上午/下午 (our output must say it: am is not Chinese).
    """
    if reference:
        text = _AM_PM.sub(_am_pm, text)
    text = text.replace("两", "二").replace("幺", "一")
    text = _DAY_HAO.sub(r"\1日", text)
    text = _MINUTE_ZERO.sub("", text)
    text = _ZERO_TEN.sub("零十", text)
    text = _MINUTE_FEN.sub(r"\1", text)
    text = _RMB.sub("元", text)
    return _PUNCTUATION.sub("", text).lower()


@dataclass
class Score:
    correct: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.total if self.total else 0.0

    def add(self, ok: bool, miss: str) -> None:
        self.total += 1
        self.correct += ok
        if not ok:
            self.misses.append(miss)


@dataclass(frozen=True)
class TnCase:
    source: str
    category: str
    written: str
    spoken: str


def tn_cases(root: pathlib.Path) -> list[TnCase]:
    """Every case of every ``tn/<source>/*.tsv`` under ``root``, in a stable order."""
    cases = []
    for path in sorted((root / "tn").glob("*/*.tsv")):
        stem = path.stem.removeprefix("test_cases_")
        default = _CATEGORY_ALIASES.get(stem, stem)
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) < 2 or not fields[0].strip():
                continue
            category = fields[2].strip() if len(fields) > 2 and fields[2].strip() else default
            cases.append(TnCase(path.parent.name, category, fields[0], fields[1]))
    return cases


def _wetext() -> Callable[[str], str] | None:
    try:
        from wetext import Normalizer
    except ImportError:
        return None
    normalizer = Normalizer(lang="zh", operator="tn")
    return normalizer.normalize


def score_tn(cases: list[TnCase], normalize: Callable[[str], str]) -> dict[tuple[str, str], Score]:
    """(source, category) -> score of ``normalize`` on those cases."""
    scores: dict[tuple[str, str], Score] = {}
    for case in cases:
        got = normalize(case.written)
        ok = canonical_tn(got) == canonical_tn(case.spoken, reference=True)
        miss = f"{case.written} -> {got} (expected {case.spoken})"
        scores.setdefault((case.source, case.category), Score()).add(ok, miss)
    return scores


def by_category(scores: dict[tuple[str, str], Score]) -> dict[str, Score]:
    """Pool the sources: category -> score."""
    pooled: dict[str, Score] = {}
    for (_, category), score in sorted(scores.items()):
        total = pooled.setdefault(category, Score())
        total.correct += score.correct
        total.total += score.total
        total.misses.extend(score.misses)
    return pooled


def _canonical_pinyin(syllable: str) -> str:
    return syllable.replace("u:", "v").replace("ü", "v")


def evaluate_cpp(root: pathlib.Path, show: int) -> dict[str, tuple[Score, Score]]:
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
        path = root / "polyphone" / "cpp" / f"{name}.tsv"
        if not path.is_file():
            continue
        ours, baseline = Score(), Score()
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            sentence, index, gold = fields[0], int(fields[1]), _canonical_pinyin(fields[2])
            mine = reader.read(sentence)[index]
            mine = marked_to_tone3(mine) if mine else ""
            theirs = plain(sentence)
            base = _canonical_pinyin(theirs[index]) if len(theirs) == len(sentence) else ""
            ours.add(mine == gold, f"{sentence[index]} in {sentence[:40]}: {mine} != {gold}")
            baseline.add(base == gold, "")
        results[name] = (ours, baseline)
    return results


def evaluate_surnames(path: pathlib.Path = SURNAME_GOLDEN) -> tuple[Score, Score]:
    """(ours, pypinyin alone) on the surname golden file: ``surname => reading`` lines.

    Each surname is read as the start of a name (surname + 明 + 华) by the composer's
    name reader; pypinyin alone reads the same name as running text.
    """
    from pypinyin import Style, lazy_pinyin

    names = NameReader(Lexicon.load(INCLUDE_DIR / "lexicons"))
    ours, baseline = Score(), Score()
    for surname, reading in golden_pairs(path):
        expected = tuple(reading.split())
        got = names.read(surname + "明华")[: len(surname)]
        ours.add(got == expected, f"{surname}: {' '.join(got)} (expected {reading})")
        plain = tuple(lazy_pinyin(surname + "明华", style=Style.TONE)[: len(surname)])
        baseline.add(plain == expected, "")
    return ours, baseline


def golden_pairs(path: pathlib.Path) -> list[tuple[str, str]]:
    """``input => expected`` lines of a golden file (``#`` comments, blank lines skipped)."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            source, expected = line.split(" => ")
            pairs.append((source, expected))
    return pairs


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


def _row(
    name: str, ours: Score, theirs: Score | None, target: bool, hybrid: Score | None = None
) -> str:
    baseline = f"{theirs.percent:10.1f}" if theirs else f"{'-':>10}"
    mixed = f"{hybrid.percent:16.1f}" if hybrid else f"{'-':>16}"
    flag = ""
    if target:
        below = ours.percent < TN_TARGET_PERCENT or (theirs and ours.percent < theirs.percent)
        flag = "  BELOW" if below else "  ok"
    return f"  {name:<30}{ours.total:>5}{ours.percent:9.1f}{baseline}{mixed}{flag}"


def print_tn(cases: list[TnCase], use_wetext: bool, misses: int) -> bool:
    """Print the per-set and per-category tables; True when every target is met.

    Three free-text normalizers side by side: ours (the rules), wetext alone, and the
    other design the issue asked to measure: wetext as the base with our rules on what it
    leaves (``wetext+rules``).
    """
    ours = score_tn(cases, lambda text: normalize_text(text, "decimal"))
    baseline = _wetext() if use_wetext else None
    theirs = score_tn(cases, baseline) if baseline else {}
    hybrid = (
        score_tn(cases, lambda text: normalize_text(baseline(text), "decimal")) if baseline else {}
    )
    header = f"{'n':>5}{'ours %':>9}{'wetext %':>10}{'wetext+rules %':>16}"
    print("\ntext normalization by set and category (sentence accuracy, canonicalized)")
    print(f"  {'source/category':<30}{header}")
    for key, score in ours.items():
        print(_row("/".join(key), score, theirs.get(key), False, hybrid.get(key)))
    pooled, pooled_theirs, pooled_hybrid = (
        by_category(ours),
        by_category(theirs),
        by_category(hybrid),
    )
    print(f"\nby category, all sources (target: >= {TN_TARGET_PERCENT:.0f} % and >= wetext)")
    print(f"  {'category':<30}{header}")
    met = True
    for category, score in pooled.items():
        target = category not in TN_NON_TARGET_CATEGORIES
        line = _row(
            category, score, pooled_theirs.get(category), target, pooled_hybrid.get(category)
        )
        met = met and not line.endswith("BELOW")
        print(line)
    total = Score(sum(s.correct for s in pooled.values()), sum(s.total for s in pooled.values()))
    wetext_total = Score(
        sum(s.correct for s in pooled_theirs.values()),
        sum(s.total for s in pooled_theirs.values()),
    )
    hybrid_total = Score(
        sum(s.correct for s in pooled_hybrid.values()),
        sum(s.total for s in pooled_hybrid.values()),
    )
    print(
        _row(
            "all",
            total,
            wetext_total if baseline else None,
            False,
            hybrid_total if baseline else None,
        )
    )
    if misses:
        print("\nworst misses (worst category first)")
        for category, score in sorted(pooled.items(), key=lambda item: item[1].percent):
            for miss in score.misses[:misses]:
                print(f"  [{category}] {miss}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.text.eval", description=__doc__)
    parser.add_argument("--no-wetext", action="store_true", help="skip the wetext baseline")
    parser.add_argument("--misses", type=int, default=5, metavar="N", help="misses per category")
    parser.add_argument("--only-tn", action="store_true", help="text normalization only")
    args = parser.parse_args(argv)
    root = eval_dir()
    if not (root / "tn").is_dir():
        print(
            f"evaluation data not found in {root}; set {EVAL_DIR_ENV} to the folder holding "
            "tn/ (and optionally polyphone/)",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    print(f"evaluation data: {root}")
    met = print_tn(tn_cases(root), not args.no_wetext, args.misses)
    if not args.only_tn:
        cpp = evaluate_cpp(root, args.misses)
        if cpp:
            print("\npolyphone pinyin (CPP, marked character)")
            print(f"  {'set':<22}{'n':>6}{'ours %':>9}{'pypinyin %':>12}")
            for name, (ours, baseline) in cpp.items():
                print(f"  {name:<22}{ours.total:>6}{ours.percent:9.2f}{baseline.percent:12.2f}")
        if SURNAME_GOLDEN.is_file():
            ours, baseline = evaluate_surnames()
            print(
                f"\nsurnames ({SURNAME_GOLDEN.name}): {ours.correct}/{ours.total} "
                f"({ours.percent:.1f}%), pypinyin alone {baseline.percent:.1f}%"
            )
            for miss in ours.misses[: args.misses]:
                print(f"  {miss}")
        valid, emitted = evaluate_cosyvoice3_tokens()
        share = 100.0 * valid / emitted if emitted else 0.0
        print(f"CosyVoice3 tokens valid: {valid}/{emitted} ({share:.1f}%)")
    print(f"\ntargets {'met' if met else 'NOT met'} ({time.perf_counter() - started:.1f} s)")
    return 0


__all__ = ["canonical_tn", "golden_pairs", "main", "tn_cases"]

if __name__ == "__main__":
    sys.exit(main())
