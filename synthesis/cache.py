"""The segment cache: sentences shared by many notices are synthesized once.

The disclosure label, greetings without names, closings and service lines recur in
every notice of a voice and style. Each processed segment (24 kHz, trimmed, leveled)
is kept under a content address: hash of engine version, voice fingerprint, style,
seed, speed and the segment itself. Shared segments live in memory for the batch and
in S3 (``segments/<xx>/<sha256>.wav``, PCM16) for later batches and retries.

A segment's seed on the first attempt is derived from that same material (not from
the notice), so every customer hears the identical sentence and the cache can serve
it; a retry after a failed quality gate uses seeds derived from the notice's own seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from synthesis.audio import MASTER_RATE, PreparedSegment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedSegment:
    """A prepared segment and how it was made."""

    prepared: PreparedSegment
    seed: int
    speed: float = 1.0
    rate_per_min: float | None = None  # measured speaking rate (spoken labels)


def material_digest(material: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(material, ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()


def content_seed(material: dict[str, Any]) -> int:
    """The first-attempt seed of a segment: fixed by what is said, by whom, how."""
    return int(material_digest(material)[:8], 16) & 0x7FFFFFFF


def retry_seed(item_seed: int, index: int, attempt: int) -> int:
    """A seed of the notice's own for a retry: differs per segment and attempt."""
    digest = hashlib.sha256(f"{item_seed}:{index}:{attempt}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def quantize(audio: np.ndarray) -> np.ndarray:
    """PCM16 precision: memory and S3 copies then hold exactly the same samples."""
    return (np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768.0) / 32768.0).astype(np.float32)


@dataclass
class CacheStats:
    memory_hits: int = 0
    store_hits: int = 0
    misses: int = 0
    corrupt: int = 0
    stored: int = 0


class SegmentCache:
    """Memory (bounded by samples) in front of S3.

    :param store: an object store with ``read_if_exists`` and ``write``
    :param max_samples: memory bound (24 kHz samples; 20 M ≈ 14 minutes ≈ 80 MB)
    """

    def __init__(self, store: Any, prefix: str = "segments", max_samples: int = 20_000_000):
        self._store = store
        self._prefix = prefix.rstrip("/")
        self._memory: OrderedDict[str, CachedSegment] = OrderedDict()
        self._samples = 0
        self._max_samples = max_samples
        self.stats = CacheStats()

    def key(self, material: dict[str, Any], seed: int, speed: float = 1.0) -> str:
        digest = material_digest({**material, "seed": seed, "speed": round(speed, 4)})
        return f"{self._prefix}/{digest[:2]}/{digest}.wav"

    def get(self, key: str, *, look_in_store: bool) -> tuple[CachedSegment | None, bool]:
        """The cached segment (or None) and whether a stored copy was found corrupt."""
        found = self._memory.get(key)
        if found is not None:
            self._memory.move_to_end(key)
            self.stats.memory_hits += 1
            return found, False
        if not look_in_store:
            self.stats.misses += 1
            return None, False
        stored = self._store.read_if_exists(key)
        if stored is None:
            self.stats.misses += 1
            return None, False
        try:
            segment = self._decode(*stored)
        except (ValueError, KeyError, RuntimeError, sf.LibsndfileError) as exc:
            log.warning("segment cache %s is corrupt (%s); synthesizing it again", key, exc)
            self.stats.corrupt += 1
            self.stats.misses += 1
            return None, True
        self.stats.store_hits += 1
        self._remember(key, segment)
        return segment, False

    def put(self, key: str, segment: CachedSegment, *, persist: bool, remember: bool) -> None:
        if remember:
            self._remember(key, segment)
        if persist:
            self._store.write(key, *self._encode(segment))
            self.stats.stored += 1

    def forget(self) -> None:
        """Drop the memory copies (S3 keeps its own)."""
        self._memory.clear()
        self._samples = 0

    def _remember(self, key: str, segment: CachedSegment) -> None:
        self._memory[key] = segment
        self._samples += segment.prepared.audio.size
        while self._samples > self._max_samples and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._samples -= dropped.prepared.audio.size

    @staticmethod
    def _encode(segment: CachedSegment) -> tuple[bytes, str, dict[str, str]]:
        """One stereo-free WAV: the master piece, then the telephone piece, at 24 kHz.

        The 8 kHz piece rides in the same file (after the master's samples) so one
        object holds the segment; the split point is in the metadata."""
        prepared = segment.prepared
        buffer = io.BytesIO()
        both = np.concatenate((prepared.audio, prepared.telephone))
        sf.write(buffer, both, MASTER_RATE, subtype="PCM_16", format="WAV")
        metadata = {
            "samples": str(prepared.audio.size),
            "telephone-samples": str(prepared.telephone.size),
            "speech-s": repr(prepared.speech_s),
            "raw-s": repr(prepared.raw_s),
            "clipped": repr(prepared.clipped_fraction),
            "seed": str(segment.seed),
            "speed": repr(segment.speed),
            "rate": "" if segment.rate_per_min is None else repr(segment.rate_per_min),
        }
        return buffer.getvalue(), "audio/wav", metadata

    @staticmethod
    def _decode(data: bytes, metadata: dict[str, str]) -> CachedSegment:
        both, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        samples, telephone = int(metadata["samples"]), int(metadata["telephone-samples"])
        if rate != MASTER_RATE or both.ndim != 1 or both.size != samples + telephone:
            raise ValueError(f"{both.size} samples at {rate} Hz, expected {samples + telephone}")
        prepared = PreparedSegment(
            audio=both[:samples],
            telephone=both[samples:],
            speech_s=float(metadata["speech-s"]),
            clipped_fraction=float(metadata["clipped"]),
            raw_s=float(metadata["raw-s"]),
        )
        rate_text = metadata.get("rate") or ""
        return CachedSegment(
            prepared,
            seed=int(metadata["seed"]),
            speed=float(metadata["speed"]),
            rate_per_min=float(rate_text) if rate_text else None,
        )
