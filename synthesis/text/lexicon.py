"""Pronunciation data loaded from include/lexicons/*.tsv: surnames, business words, CMU words."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from synthesis.text.errors import NoticeTextError


def read_tsv_rows(path: pathlib.Path) -> list[tuple[str, ...]]:
    """Read ``key<TAB>value[<TAB>more...]`` lines as rows; ``#`` starts a comment line."""
    rows: list[tuple[str, ...]] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0] or not fields[1].strip():
            raise ValueError(f"{path}:{line_no}: expected key<TAB>value")
        rows.append(tuple(field.strip() if i else field for i, field in enumerate(fields)))
    return rows


def read_tsv(path: pathlib.Path) -> dict[str, str]:
    """Read ``key<TAB>value[<TAB>note]`` lines; ``#`` starts a comment line."""
    return {row[0]: row[1] for row in read_tsv_rows(path)}


@dataclass(frozen=True)
class Lexicon:
    """Surname readings, word readings (both tone-marked pinyin) and CMU word phonemes."""

    surnames: dict[str, str] = field(default_factory=dict)
    words: dict[str, str] = field(default_factory=dict)
    cmu: dict[str, str] = field(default_factory=dict)
    char_defaults: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table in (self.surnames, self.words, self.char_defaults):
            for key, reading in table.items():
                if len(reading.split()) != len(key):
                    raise ValueError(f"lexicon entry {key!r}: one syllable per character")

    @property
    def longest_word(self) -> int:
        return max((len(word) for word in self.words), default=0)

    @classmethod
    def load(cls, lexicon_dir: pathlib.Path) -> Lexicon:
        """Load ``surnames.tsv``, ``words.tsv``, ``char_defaults.tsv``, ``cmu.tsv``."""
        try:
            return cls(
                surnames=read_tsv(lexicon_dir / "surnames.tsv"),
                words=read_tsv(lexicon_dir / "words.tsv"),
                char_defaults=read_tsv(lexicon_dir / "char_defaults.tsv"),
                cmu={
                    key.upper(): value for key, value in read_tsv(lexicon_dir / "cmu.tsv").items()
                },
            )
        except FileNotFoundError as exc:
            raise NoticeTextError(
                "template_error", f"lexicon file missing: {exc.filename}"
            ) from exc
