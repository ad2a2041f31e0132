"""Benchmark: compose + espeak markup for many notices, cached path vs cold caches; and
compose + CosyVoice3 markup on unique names, memoized pieces vs the path before them.

    python -m synthesis.text.bench [--notices 100000] [--naive-notices 2000]
                                   [--markup-notices 30000] [--rounds 3]

The naive path composes the same notices but clears every cache before each one, so
each notice pays for literal normalization, pypinyin and name readings again (what a
frontend without caches does). Prints both rates and their ratio.

The markup figure is compose + CosyVoice3 markup of every segment, with every notice's
name one no other notice has, so only what the template fixes can be reused. It is
counted in CPU seconds of the measuring process (one core; the machines are shared).
The path before alternates with the current one on fresh notices each round, each
round in a new process: the notice assembled and then split (no per-template
sentences), every value checked and read again, markup with pypinyin per override span
memoized by whole span and nothing else kept. It shares today's readers and per-word
pypinyin memo, so it is faster than the old code was; the median of the rounds is
printed with the ratio.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

from synthesis.text.composer import NoticeComposer
from synthesis.text.normalize import normalize_cached
from synthesis.text.paths import INCLUDE_DIR
from synthesis.text.pinyin import heteronyms, marked_to_tone3, run_marked, run_tone3
from synthesis.text.render import espeak
from synthesis.text.render.cosyvoice3 import (
    TokenInventory,
    default_inventory,
    render_cosyvoice3,
    render_cosyvoice3_uncached,
)
from synthesis.text.split import make_segment

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐曾单解仇查区朴乐华任"
GIVEN = "小明伟芳娜敏静丽强磊军洋勇艳杰娟涛超秀英华慧建国平红玉兰春梅"
COMPOUND = ("欧阳", "尉迟", "司马", "诸葛", "上官")
#: Given-name characters for unique names (with GIVEN: over 400,000 distinct names).
GIVEN_MORE = (
    "一丁万丹乐云亮仁伦佳俊倩健光克兵冬凤凯刚力勤博卫嘉国坤城培如婷子宁安宏宇宝峰川帆"
    "康庆彤德志忠思恒成振文斌新方旭昊星晨晓晶智朝杨松林桂梓楠欣正毅永江波泽洁海涵淑清"
    "琪琳瑞瑶璐生畅百皓盈真睿磊福秋程立童竹筱紫红维美翔翠聪胜舒良芝若茜荣莉菲萍蓉蕾"
)
ORGANIZATIONS = ("招商银行", "中国工商银行", "北京协和医院", "平安保险", "重庆农村商业银行")
Notice = tuple[str, str, dict[str, object], dict[str, str]]


def _name(rng: random.Random) -> str:
    surname = rng.choice(COMPOUND) if rng.random() < 0.05 else rng.choice(SURNAMES)
    return surname + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _variables(notice_type: str, rng: random.Random) -> dict[str, object]:
    amount = round(rng.uniform(1, 50000), rng.choice((0, 1, 2)))
    if notice_type == "repayment_reminder":
        return {
            "amount": amount,
            "due_date": _date(rng),
            "card_tail": f"{rng.randint(0, 9999):04d}",
        }
    if notice_type == "appointment_confirmation":
        return {
            "appointment_date": _date(rng),
            "appointment_time": f"{rng.randint(8, 17)}:{rng.choice(('00', '15', '30', '45'))}",
            "department": rng.choice(("心内科", "骨科", "眼科", "口腔科", "内分泌科")),
        }
    if notice_type == "pension_arrival":
        return {"amount": amount, "arrival_date": _date(rng)}
    return {
        "policy_no": f"P{rng.randint(2020, 2026)}A{rng.randint(0, 9999):04d}",
        "premium": amount,
        "expiry_date": _date(rng),
    }


def _unique_name(rng: random.Random, seen: set[str]) -> str:
    pool = GIVEN + GIVEN_MORE
    while True:
        surname = rng.choice(COMPOUND) if rng.random() < 0.05 else rng.choice(SURNAMES)
        name = surname + "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2, 2))))
        if name not in seen:
            seen.add(name)
            return name


def make_notices(count: int, seed: int = 20261203, *, unique_names: bool = False) -> list[Notice]:
    """Deterministic synthetic notices: 80% Mandarin, 10% Cantonese, 10% English.

    :param unique_names: every notice's customer has a name no other notice has.
    """
    rng = random.Random(seed)
    types = ("repayment_reminder", "appointment_confirmation", "pension_arrival", "policy_renewal")
    notices = []
    seen: set[str] = set()
    for _ in range(count):
        notice_type = rng.choice(types)
        locale = rng.choices(("cmn", "yue", "en"), weights=(8, 1, 1))[0]
        context = {
            "organization": rng.choice(ORGANIZATIONS),
            "customer_name": _unique_name(rng, seen) if unique_names else _name(rng),
            "confirm_key": "1",
            "optout_key": "9",
            "service_phone": rng.choice(("95555", "010-69156114", "95511")),
        }
        notices.append((notice_type, locale, _variables(notice_type, rng), context))
    return notices


def clear_all_caches(composer: NoticeComposer) -> None:
    composer.clear_caches()
    for cached in (normalize_cached, run_tone3, run_marked, marked_to_tone3, heteronyms):
        cached.cache_clear()
    for cached in (espeak.render_espeak, espeak._gap_tokens, espeak._reading_tokens, make_segment):
        cached.cache_clear()


def run(composer: NoticeComposer, notices: list[Notice], before_each: Callable[[], None]) -> float:
    """Notices per second for compose + espeak markup of every segment."""
    started = time.perf_counter()
    for notice_type, locale, variables, context in notices:
        before_each()
        for segment in composer.compose(notice_type, locale, variables, context).segments:
            espeak.render_espeak(segment)
    return len(notices) / (time.perf_counter() - started)


def markup_rate(
    composer: NoticeComposer,
    notices: list[Notice],
    render: Callable[..., str],
    inventory: TokenInventory,
) -> float:
    """Notices per CPU second for compose + CosyVoice3 markup of every segment."""
    started = time.process_time()
    for notice_type, locale, variables, context in notices:
        for segment in composer.compose(notice_type, locale, variables, context).segments:
            render(segment, inventory)
    return len(notices) / (time.process_time() - started)


def render_before(inventory: TokenInventory) -> Callable[..., str]:
    """The markup path before memoized pieces: pypinyin per override span, memoized by
    whole span (a new name or amount is a new span), every gap worked out again."""
    whole_span = lru_cache(maxsize=65536)(lambda span: tuple(lazy_pinyin(span, style=Style.TONE)))

    def render(segment: object, _inventory: TokenInventory) -> str:
        return render_cosyvoice3_uncached(segment, inventory, reading=whole_span)

    return render


class _Forgets(dict):
    """A memo that keeps nothing."""

    def __setitem__(self, key: object, value: object) -> None:
        pass


def _markup_round(path: str, count: int, seed: int) -> float:
    """One round of one markup path, in a process of its own (see :func:`bench_markup`)."""
    inventory = default_inventory()
    frontend = NoticeComposer.load(INCLUDE_DIR)
    render = render_cosyvoice3
    if path == "before":
        frontend._assemble_sentences = lambda *args: None  # always assemble, then split
        frontend._slot_memo = _Forgets()  # every value checked and read every time
        render = render_before(inventory)
    # Templates, lexicons and tokens loaded, as in a worker that has planned before.
    markup_rate(frontend, make_notices(500, seed=1, unique_names=True), render, inventory)
    notices = make_notices(count, seed=seed, unique_names=True)
    return markup_rate(frontend, notices, render, inventory)


def bench_markup(count: int, rounds: int) -> dict[str, float]:
    """Median notices/s of both markup paths, alternating, fresh unique names each round.

    Each round of each path runs in a new process: what one path memoizes (and the
    garbage collector then walks) never weighs on the other.
    """
    rates: dict[str, list[float]] = {"before": [], "after": []}
    spawn = multiprocessing.get_context("spawn")
    for round_ in range(rounds):
        for name in rates:
            seed = 1000 + 2 * round_ + (name == "after")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                rates[name].append(pool.submit(_markup_round, name, count, seed).result())
    return {name: statistics.median(values) for name, values in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.text.bench", description=__doc__)
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--naive-notices", type=int, default=2_000)
    parser.add_argument("--markup-notices", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markup-only", action="store_true", help="only the markup figure")
    args = parser.parse_args(argv)
    markup = bench_markup(args.markup_notices, args.rounds)
    print(
        f"cosyvoice3 markup, unique names, {args.markup_notices} notices x {args.rounds} rounds "
        f"(median): {markup['after']:,.0f} notices/s; before: {markup['before']:,.0f} "
        f"notices/s; ratio {markup['after'] / markup['before']:.2f}x"
    )
    if args.markup_only:
        return 0
    composer = NoticeComposer.load(INCLUDE_DIR)
    notices = make_notices(args.notices)
    cached_rate = run(composer, notices, lambda: None)
    print(f"cached: {args.notices} notices, {cached_rate:,.0f} notices/s")
    naive = notices[: args.naive_notices]
    naive_rate = run(composer, naive, lambda: clear_all_caches(composer))
    print(f"naive (caches cleared per notice): {len(naive)} notices, {naive_rate:,.0f} notices/s")
    print(f"speed-up: {cached_rate / naive_rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
