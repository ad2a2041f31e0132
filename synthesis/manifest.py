"""Batch and result manifests: the contract between the plan step and the worker.

One JSONL file per batch, one JSON object per line. The plan step writes
``BatchItem`` lines; the worker answers with one ``ResultItem`` line per item
in a result file. Both sides import this module, so it stays torch-free and
Airflow-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class VoiceSpec:
    """Which voice speaks an item.

    :param profile: the voice profile id (``standard`` is the engine's own voice)
    :param instruct: a dialect or tone instruction for engines that take one
    :param emotion: the profile's enrolled emotion variant that speaks (``warm``,
        ``serious``; None: the normal variant, ``prompt.wav``)
    """

    profile: str = "standard"
    instruct: str | None = None
    emotion: str | None = None


@dataclass(frozen=True)
class BatchItem:
    ledger_id: int
    notice_id: int
    campaign_date: str
    notice_type: str
    locale: str
    segments: list[dict[str, Any]]
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    seed: int = 0

    def to_json(self) -> str:
        return item_line(self.ledger_id, self.json_tail())

    def json_tail(self) -> str:
        """The JSON line after its ledger id (:func:`item_line` puts them together): the
        plan's worker processes make it before the ledger has given the row its id."""
        # Field by field, not ``asdict``: a plan writes 100,000 lines and asdict deep-copies
        # every segment. Same keys in the same order, so the same line as before.
        voice = self.voice
        return json.dumps(
            {
                "notice_id": self.notice_id,
                "campaign_date": self.campaign_date,
                "notice_type": self.notice_type,
                "locale": self.locale,
                "segments": self.segments,
                "voice": {
                    "profile": voice.profile,
                    "instruct": voice.instruct,
                    "emotion": voice.emotion,
                },
                "seed": self.seed,
            },
            ensure_ascii=False,
        )[1:]

    @classmethod
    def from_json(cls, line: str) -> BatchItem:
        raw = json.loads(line)
        if raw.pop("v", None) != MANIFEST_VERSION:
            raise ValueError("batch item has no or another manifest version")
        raw["voice"] = VoiceSpec(**raw.get("voice") or {})
        return cls(**raw)


@dataclass(frozen=True)
class ResultItem:
    ledger_id: int
    notice_id: int
    status: str  # "ok" or "failed"
    engine: str
    seed: int
    audio_key: str | None = None
    duration_s: float | None = None
    error_code: str | None = None
    detail: str | None = None
    resumed: bool = False  # the audio existed already: nothing was synthesized
    synth_seconds: float = 0.0
    # Added with the quality gate and labels; all optional, older lines still parse.
    engine_seconds: float = 0.0  # time inside the engine (the rest is worker overhead)
    fallback: bool = False  # rendered by the fallback engine
    attempts: int = 0  # renderings tried: 1 = first, 2 = other seed, 3 = fallback engine
    qc: dict[str, Any] | None = None  # quality-gate metrics of the published rendering
    labels: dict[str, Any] | None = None  # spoken label (source, rate) and implicit label
    master_key: str | None = None  # the 24 kHz PCM16 master (FLAC or WAV), None: not kept
    segment_seeds: list[int] | None = None  # the seed of every segment, in order
    speech_audio_s: float = 0.0  # seconds of speech in the notice
    cached_audio_s: float = 0.0  # of which served from the segment cache
    warnings: list[str] | None = None  # repaired problems, e.g. segment_cache_corrupt
    telephone_bytes: int | None = None  # S3 bytes of the telephone file
    master_bytes: int | None = None  # S3 bytes of the master (None: no master kept)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ResultItem:
        raw = json.loads(line)
        known = cls.__dataclass_fields__
        return cls(**{name: value for name, value in raw.items() if name in known})


def item_line(ledger_id: int, tail: str) -> str:
    """A batch item's JSON line from its ledger id and :meth:`BatchItem.json_tail`:
    ``{"v": 1, "ledger_id": 7, "notice_id": ...}``, what ``json.dumps`` makes of the item."""
    return f'{{"v": {MANIFEST_VERSION}, "ledger_id": {int(ledger_id)}, {tail}'


def item_seed(notice_id: int, campaign_date: str) -> int:
    """A seed fixed by the notice and date, so a re-run renders the same audio."""
    digest = hashlib.sha256(f"{notice_id}:{campaign_date}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def audio_key(engine_version: str, item: BatchItem, prefix: str = "audio") -> str:
    """Content-addressed S3 key of an item's telephone audio.

    Identical inputs (engine version, voice, seed, segments) give the identical
    key, which is what lets a resumed worker skip finished items.
    """
    voice = asdict(item.voice)
    if voice["emotion"] is None:
        del voice["emotion"]  # the normal variant keeps the keys it had before variants
    material = json.dumps(
        {
            "engine": engine_version,
            "voice": voice,
            "seed": item.seed,
            "segments": item.segments,
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
    return f"{prefix}/{digest[:2]}/{digest}.wav"


def results_key_for(batch_key: str) -> str:
    """The result manifest written next to a batch manifest."""
    if "/batches/" not in batch_key:
        raise ValueError(f"not a batch manifest key: {batch_key}")
    return batch_key.replace("/batches/", "/results/", 1)


def dump_lines(items: Iterable[BatchItem | ResultItem]) -> bytes:
    return "".join(item.to_json() + "\n" for item in items).encode("utf-8")


def parse_lines(payload: bytes | str) -> Iterator[str]:
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return (line for line in text.splitlines() if line.strip())


def parse_results(payload: bytes | str) -> dict[int, ResultItem]:
    """Result lines by ledger id; a later line for the same item wins (a resumed run)."""
    results: dict[int, ResultItem] = {}
    for line in parse_lines(payload):
        item = ResultItem.from_json(line)
        results[item.ledger_id] = item
    return results
