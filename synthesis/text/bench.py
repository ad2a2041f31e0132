"""Benchmark: compose + espeak markup for many notices, cached path vs cold caches.

    python -m synthesis.text.bench [--notices 100000] [--naive-notices 2000]

The naive path composes the same notices but clears every cache before each one, so
each notice pays for literal normalization, pypinyin and name readings again (what a
frontend without caches does). Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

from synthesis.text.composer import NoticeComposer
from synthesis.text.normalize import normalize_cached
from synthesis.text.paths import INCLUDE_DIR
from synthesis.text.pinyin import heteronyms, marked_to_tone3, run_marked, run_tone3
from synthesis.text.render import espeak
from synthesis.text.split import make_segment

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐曾单解仇查区朴乐华任"
GIVEN = "小明伟芳娜敏静丽强磊军洋勇艳杰娟涛超秀英华慧建国平红玉兰春梅"
COMPOUND = ("欧阳", "尉迟", "司马", "诸葛", "上官")
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


def make_notices(count: int, seed: int = 20261203) -> list[Notice]:
    """Deterministic synthetic notices: 80% Mandarin, 10% Cantonese, 10% English."""
    rng = random.Random(seed)
    types = ("repayment_reminder", "appointment_confirmation", "pension_arrival", "policy_renewal")
    notices = []
    for _ in range(count):
        notice_type = rng.choice(types)
        locale = rng.choices(("cmn", "yue", "en"), weights=(8, 1, 1))[0]
        context = {
            "organization": rng.choice(ORGANIZATIONS),
            "customer_name": _name(rng),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis.text.bench", description=__doc__)
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--naive-notices", type=int, default=2_000)
    args = parser.parse_args(argv)
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
