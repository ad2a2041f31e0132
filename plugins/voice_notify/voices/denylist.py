"""The voice denylist: public figures and government bodies voice-notify never clones.

The list is data: ``include/voices/denylist.yaml`` (names and, for voices, the
synthetic stand-in that produces the reference) and
``include/voices/denylist_embeddings.json`` (the reference embeddings, regenerated
with ``python -m voice_notify.voices.denylist build``).
"""

from __future__ import annotations

import argparse
import json
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_notify.voices.checks import (
    DENYLIST_SIMILARITY,
    EMBEDDING_MODEL,
    RecordingRejected,
    cosine,
    embed,
)
from voice_notify.voices.synthetic import SyntheticVoice, render_synthetic

log = logging.getLogger(__name__)

# -- the denylist ---------------------------------------------------------------------------


def normalize_name(text: str) -> str:
    """Case, width and punctuation folded away: ``Police  Dept.`` → ``policedept``."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(ch for ch in folded if ch.isalnum())


@dataclass(frozen=True)
class DenylistEntry:
    id: str
    kind: str  # public_figure | government_body
    names: tuple[str, ...]
    reference: tuple[float, ...] | None = None  # stand-in speaker embedding


@dataclass(frozen=True)
class Denylist:
    entries: tuple[DenylistEntry, ...]
    similarity: float = DENYLIST_SIMILARITY

    def name_match(
        self, speaker: str, profile_id: str = "", transcript: str = ""
    ) -> DenylistEntry | None:
        """The entry whose name appears in the speaker's name or the profile id; government
        bodies also in the transcript (an agent's prompt does not speak as the police)."""
        who = [normalize_name(speaker), normalize_name(profile_id.replace("-", " "))]
        said = normalize_name(transcript)
        for entry in self.entries:
            for name in entry.names:
                wanted = normalize_name(name)
                if not wanted:
                    continue
                if any(wanted in text for text in who if text):
                    return entry
                if entry.kind == "government_body" and said and wanted in said:
                    return entry
        return None

    def voice_match(self, embedding: np.ndarray) -> tuple[DenylistEntry | None, float]:
        """The closest denylisted voice at or above the threshold, and the best cosine seen."""
        best: tuple[DenylistEntry | None, float] = (None, -1.0)
        for entry in self.entries:
            if entry.reference is None:
                continue
            score = cosine(embedding, entry.reference)
            if score > best[1]:
                best = (entry, score)
        entry, score = best
        return (entry if score >= self.similarity else None), score


def _voices_dir(include_dir: Path | None) -> Path:
    if include_dir is None:
        from voice_notify.settings import get_settings

        include_dir = get_settings().include_dir
    return Path(include_dir) / "voices"


def load_denylist(include_dir: Path | None = None) -> Denylist:
    """``include/voices/denylist.yaml`` with the reference embeddings beside it."""
    import yaml

    folder = _voices_dir(include_dir)
    spec = yaml.safe_load((folder / "denylist.yaml").read_text(encoding="utf-8"))
    refs_path = folder / "denylist_embeddings.json"
    refs = json.loads(refs_path.read_text(encoding="utf-8")) if refs_path.exists() else {}
    entries = []
    for raw in spec["entries"]:
        ref = refs.get("embeddings", {}).get(raw["id"])
        entries.append(
            DenylistEntry(
                id=raw["id"],
                kind=raw["kind"],
                names=tuple(raw.get("names") or ()),
                reference=tuple(ref) if ref else None,
            )
        )
    return Denylist(tuple(entries), float(spec.get("similarity", DENYLIST_SIMILARITY)))


def check_denylist(
    denylist: Denylist,
    *,
    speaker: str,
    profile_id: str,
    transcript: str,
    embedding: np.ndarray | None,
) -> dict[str, Any]:
    """Name first, then voice; returns the best similarity seen.

    :raises RecordingRejected: ``denylist_name`` or ``denylist_voice``
    """
    entry = denylist.name_match(speaker, profile_id, transcript)
    if entry is not None:
        raise RecordingRejected("denylist_name", f"names {entry.kind} {entry.id}")
    if embedding is None:
        return {}
    entry, score = denylist.voice_match(embedding)
    metrics = {"denylist_max_similarity": round(score, 4)}
    if entry is not None:
        raise RecordingRejected(
            "denylist_voice", f"{score:.3f} to {entry.kind} {entry.id}", metrics
        )
    return metrics


def _yaml_entries(include_dir: Path | None) -> list[dict[str, Any]]:
    import yaml

    spec = yaml.safe_load((_voices_dir(include_dir) / "denylist.yaml").read_text("utf-8"))
    return spec["entries"]


def build_denylist_embeddings(include_dir: Path | None = None) -> dict[str, Any]:
    """Reference embeddings of the denylist's synthetic stand-ins (mean over their texts)."""
    embeddings = {}
    for raw in _yaml_entries(include_dir):
        stand_in = raw.get("stand_in")
        if not stand_in:
            continue
        voice = SyntheticVoice(stand_in["variant"], stand_in.get("pitch", 50))
        vectors = [
            embed(*render_synthetic(text, stand_in.get("lang", "cmn"), voice))
            for text in stand_in["texts"]
        ]
        mean = np.mean(vectors, axis=0)
        embeddings[raw["id"]] = [round(float(x), 6) for x in mean / np.linalg.norm(mean)]
    return {
        "model": EMBEDDING_MODEL,
        "note": "synthetic espeak-ng stand-ins, not recordings of the people or bodies named",
        "embeddings": embeddings,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m voice_notify.voices.denylist build``: rewrite ``denylist_embeddings.json``."""
    parser = argparse.ArgumentParser(description="the voice denylist's reference embeddings")
    parser.add_argument("what", choices=("build",))
    parser.add_argument("--include-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    body = build_denylist_embeddings(args.include_dir)
    target = _voices_dir(args.include_dir) / "denylist_embeddings.json"
    target.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(body['embeddings'])} reference embeddings to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
