"""Adversarial inputs for the linear-time test and the fuzz test (deterministic)."""

from __future__ import annotations

import random

#: Pieces that make a backtracking pattern try hard: digits with every separator the
#: rules know, units, scale words, signs, markup halves, Han the rules look for.
PIECES = (
    "0", "1", "9", "08", "2008", "12", "-", ".", ":", "：", "/", ",", "~", "～", "—", "·",
    "%", "‰", "+", "=", "×", "<", ">", "≥", "±", "^", "²", " ", "年", "月", "日", "号", "点",
    "分", "秒", "元", "万", "亿", "第", "个", "后", "代", "又", "分之", "百分之", "比分", "$",
    "¥", "US$", "CNY", "km", "kg", "m", "/h", "°C", "am", "p.m.", "a", "A", "w", "e", "bc",
    "尾号", "电话", "<|", "|>", "[[", "]]", "[", "]", "<", "[breath]", "公元", "上午", "内",
)  # fmt: skip


def repeated(length: int, pairs_of: int = 12) -> list[str]:
    """Each piece, and each pair of the first ``pairs_of`` pieces (digits and separators),
    repeated to ``length`` characters and ended by a character no rule wants (where a
    backtracking pattern gives up only after trying every split)."""
    units = list(PIECES) + [a + b for a in PIECES[:pairs_of] for b in PIECES[:pairs_of]]
    return [(unit * (length // len(unit) + 1))[: length - 1] + "x" for unit in units]


def random_strings(count: int, seed: int, max_pieces: int = 12) -> list[str]:
    """``count`` random strings of pieces, Han, Latin, symbols and other scripts."""
    rng = random.Random(seed)
    extra = (
        "的了是在有我他这中大来上国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她"
        "里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公"
        "同三已老从动两长ABCxyz ,.!?;:'\"()#&*@_|\\{}€£₩₹éü한글カナДж١٢٣"
    )
    strings = []
    for _ in range(count):
        pieces = [
            rng.choice(PIECES) if rng.random() < 0.6 else rng.choice(extra)
            for _ in range(rng.randint(0, max_pieces))
        ]
        strings.append("".join(pieces))
    return strings
