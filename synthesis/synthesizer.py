"""Turning one batch's items into telephone audio: ``BatchSynthesizer``.

Per item: resume if its audio key exists; resolve the voice profile and style; put
the spoken AI label first (the template's own first sentence when it is the label);
render each segment through the segment cache; assemble, telephone-process, run the
quality gate. A failing gate is retried once with other seeds, then the fallback
engine renders the notice, then the item fails with a reason code. Bad input fails
the item alone; the batch goes on. The CLI around it is ``synthesis.worker``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from synthesis.engines.base import SynthesisEngine
from synthesis.manifest import BatchItem, ResultItem, audio_key
from synthesis.store import BatchStore, TransientStorageError

log = logging.getLogger("synthesis.worker")

#: Reason codes of bad input: no other seed or engine can fix them.
_INPUT_REASONS = frozenset({"empty_segment", "invalid_segment", "unknown_instruct"})
#: How many times the spoken label's speed is corrected towards the rate window.
_LABEL_CALIBRATION_ROUNDS = 4
#: Ways of keeping the 24 kHz master (``--master``, ``VOICE_NOTIFY_KEEP_MASTER``).
MASTER_FORMATS = ("flac", "wav", "none")
_CONTENT_TYPES = {"WAV": "audio/wav", "FLAC": "audio/flac"}


@dataclass
class WorkerOptions:
    """Where things go and who is named in the labels.

    :param house_voice: the profile that speaks ``standard`` items on engines without a
        voice of their own (CosyVoice3)
    :param producer, propagator: ``ContentProducer`` / ``ContentPropagator`` of the label
    """

    audio_prefix: str = "audio"
    master_prefix: str = "masters"
    segment_prefix: str = "segments"
    voices_prefix: str = "voices"
    law: str = "ULAW"
    house_voice: str = "house"
    producer: str = "voice-notify"
    propagator: str = "voice-notify"
    write_master: bool = True  # False: as master_format "none"
    similarity_threshold: float | None = None
    #: How the 24 kHz master is kept: ``flac`` (lossless, compressed), ``wav`` (PCM16)
    #: or ``none`` (not kept: the telephone file is all dialing needs).
    master_format: str = "flac"

    def __post_init__(self) -> None:
        if self.master_format not in MASTER_FORMATS:
            raise ValueError(f"master format must be one of {MASTER_FORMATS}")

    @property
    def kept_master(self) -> str | None:
        """The master's container (``FLAC``/``WAV``), None when no master is kept."""
        if not self.write_master or self.master_format == "none":
            return None
        return self.master_format.upper()


@dataclass
class Rendition:
    """One rendering of a notice by one engine, before it is published."""

    engine: Any
    master: np.ndarray
    telephone: np.ndarray
    qc: Any
    seeds: list[int]
    label: dict[str, Any]
    speech_s: float
    cached_s: float
    engine_s: float


class NoticeFailed(Exception):
    def __init__(self, reason_code: str, detail: str, qc: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
        self.qc = qc


class BatchSynthesizer:
    """Turns batch items into telephone audio, one item at a time, each isolated.

    :param engine: the loaded primary engine
    :param fallback: a loaded engine that renders a notice the primary could not
    """

    def __init__(
        self,
        engine: SynthesisEngine,
        store: BatchStore,
        options: WorkerOptions,
        *,
        fallback: SynthesisEngine | None = None,
        workdir: Path | None = None,
        speaker_encoder: Any | None = None,
        io_threads: int = 4,
    ) -> None:
        from synthesis.cache import SegmentCache
        from synthesis.instructs import default_catalogue
        from synthesis.qc import QcThresholds, SpeakerEncoder
        from synthesis.voices import VoiceLibrary

        self.engine = engine
        self.fallback = fallback if fallback is not None and fallback is not engine else None
        self.store = store
        self.options = options
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vn-voices-")
            workdir = Path(self._tmp.name)
        self.voices = VoiceLibrary(store, workdir, options.voices_prefix)
        self.cache = SegmentCache(store, options.segment_prefix)
        self.instructs = default_catalogue()
        thresholds = QcThresholds()
        if options.similarity_threshold is not None:
            thresholds = QcThresholds(similarity=options.similarity_threshold)
        self.thresholds = thresholds
        self.speaker_encoder = speaker_encoder or SpeakerEncoder()
        self._references: dict[str, np.ndarray] = {}
        self._shared: Counter[str] = Counter()
        self._heads: dict[str, dict[str, Any] | None] = {}
        # S3 round trips are hidden behind synthesis: uploads and resume checks run on a
        # few threads while the next notice renders; ``drain()`` waits for every upload.
        self._io = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="vn-s3")
        self._pending: deque[Future[None]] = deque()
        self._post = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vn-post")

    def plan(self, items: list[BatchItem]) -> None:
        """Count which segments recur in the batch (only those are cached) and look up, in
        parallel, which items a previous run already finished."""
        for item in items:
            for raw in item.segments:
                self._shared[self._share_key(item, raw)] += 1
        keys = [audio_key(self.engine.version, item, self.options.audio_prefix) for item in items]
        self._heads.update(zip(keys, self._io.map(self.store.head, keys), strict=True))
        self._embed_references(items)

    def _embed_references(self, items: list[BatchItem]) -> None:
        """The reference embedding of every cloned voice in the batch, in one model call.

        Only an engine that renders from the reference recording clones; on any other
        engine nothing is embedded and the encoder is never loaded.
        """
        from synthesis.voices import VoiceProfileError

        if not self.engine.needs_prompt:
            return
        voices: dict[str, Any] = {}
        for item in items:
            try:
                voice = self._voice(item, self.engine)
            except VoiceProfileError:
                continue  # the item fails with its reason when it is processed
            if not voice.is_standard and voice.fingerprint not in self._references:
                voices.setdefault(voice.fingerprint, voice)
        if voices:
            embeddings = self.speaker_encoder.embed_many(
                [(voice.prompt_audio, voice.prompt_rate) for voice in voices.values()]
            )
            self._references.update(zip(voices, embeddings, strict=True))

    def drain(self) -> None:
        """Wait for every pending upload; re-raise the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        self._io.shutdown(wait=True)
        self._post.shutdown(wait=True)
        if self._tmp is not None:
            self._tmp.cleanup()

    @staticmethod
    def _share_key(item: BatchItem, raw: Any) -> str:
        return json.dumps(
            [item.voice.profile, item.voice.instruct, raw], ensure_ascii=False, sort_keys=True
        )

    # -- one item ---------------------------------------------------------------

    def process(self, item: BatchItem) -> ResultItem:
        key = audio_key(self.engine.version, item, self.options.audio_prefix)
        base = {"ledger_id": item.ledger_id, "notice_id": item.notice_id, "seed": item.seed}
        warnings: list[str] = []
        existing = self._heads.pop(key) if key in self._heads else self.store.head(key)
        if existing is not None:
            metadata = existing.get("Metadata", {})
            if str(existing.get("ContentLength")) == metadata.get("bytes"):
                return ResultItem(
                    **base,
                    status="ok",
                    engine=metadata.get("engine", self.engine.version),
                    audio_key=key,
                    duration_s=float(metadata.get("duration-s", "0") or 0),
                    resumed=True,
                    fallback=metadata.get("fallback") == "1",
                    master_key=metadata.get("master-key") or None,
                    telephone_bytes=int(existing["ContentLength"]),
                    master_bytes=_int_or_none(metadata.get("master-bytes")),
                )
            log.warning("notice %s: stored audio %s is corrupt", item.notice_id, key)
            warnings.append("audio_cache_corrupt")
        started = time.perf_counter()
        try:
            rendition, attempts = self._render_with_policy(item, warnings)
        except NoticeFailed as exc:
            return ResultItem(
                **base,
                status="failed",
                engine=self.engine.version,
                error_code=exc.reason_code,
                detail=exc.detail[:300],
                qc=exc.qc,
                warnings=warnings or None,
            )
        master_key, telephone_bytes, master_bytes = self._publish(item, key, rendition)
        return ResultItem(
            **base,
            status="ok",
            engine=rendition.engine.version,
            audio_key=key,
            duration_s=round(rendition.telephone.size / 8000, 3),
            synth_seconds=round(time.perf_counter() - started, 4),
            engine_seconds=round(rendition.engine_s, 4),
            fallback=rendition.engine is not self.engine,
            attempts=attempts,
            qc=rendition.qc.metrics,
            labels=rendition.label,
            master_key=master_key,
            telephone_bytes=telephone_bytes,
            master_bytes=master_bytes,
            segment_seeds=rendition.seeds,
            speech_audio_s=round(rendition.speech_s, 3),
            cached_audio_s=round(rendition.cached_s, 3),
            warnings=warnings or None,
        )

    def _render_with_policy(self, item: BatchItem, warnings: list[str]) -> tuple[Rendition, int]:
        """Primary engine (two seeds), then the fallback engine; the first that passes QC."""
        from synthesis.engines.base import EngineUnavailable, SegmentRejected
        from synthesis.instructs import UnknownInstruct
        from synthesis.voices import VoiceProfileError

        segments = self._segments(item)
        instruct = None
        if item.voice.instruct:
            try:
                instruct = self.instructs.for_notice(item.voice.instruct)
            except UnknownInstruct:
                raise NoticeFailed("unknown_instruct", repr(item.voice.instruct)[:80]) from None
        plan = [(self.engine, 0), (self.engine, 1)]
        if self.fallback is not None:
            plan.append((self.fallback, 0))
        failure: NoticeFailed | None = None
        engine_engaged = None
        for count, (engine, attempt) in enumerate(plan, start=1):
            if failure is not None and engine is engine_engaged and failure.qc is None:
                continue  # the engine itself failed: another seed will not help
            engine_engaged = engine
            try:
                voice = (
                    self._voice(item, engine) if engine is self.engine else self._standard(engine)
                )
                rendition = self._render(item, engine, voice, instruct, segments, attempt, warnings)
            except VoiceProfileError as exc:
                if engine is self.engine:
                    raise NoticeFailed(exc.reason_code, exc.detail) from None
                failure = NoticeFailed(exc.reason_code, exc.detail)
                continue
            except SegmentRejected as exc:
                if exc.reason_code in _INPUT_REASONS:
                    raise NoticeFailed(exc.reason_code, exc.detail) from None
                failure = NoticeFailed(exc.reason_code, exc.detail)
                continue
            except (TransientStorageError, EngineUnavailable):
                raise
            except Exception as exc:  # one broken item must not stop the batch
                log.exception("notice %s: %s crashed", item.notice_id, engine.name)
                failure = NoticeFailed("engine_crash", f"{type(exc).__name__}: {exc}")
                continue
            if rendition.qc.passed:
                return rendition, count
            failure = NoticeFailed(
                rendition.qc.reason_code, ", ".join(rendition.qc.failures), rendition.qc.metrics
            )
            log.info(
                "notice %s: %s attempt %d failed QC %s",
                item.notice_id,
                engine.name,
                attempt,
                rendition.qc.failures,
            )
        assert failure is not None
        raise failure

    def _segments(self, item: BatchItem) -> list[tuple[Any, bool, bool]]:
        """``(segment, is_label, shared)`` in speaking order, the label first."""
        from synthesis.labels import is_spoken_label, label_segment
        from synthesis.text import Segment

        if not item.segments:
            raise NoticeFailed("empty_segment", "the item has no segments")
        out = []
        for raw in item.segments:
            try:
                segment = Segment.from_dict(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise NoticeFailed("invalid_segment", str(exc)) from None
            if not segment.text.strip():
                raise NoticeFailed("empty_segment", "a segment has no text")
            out.append((segment, False, self._shared[self._share_key(item, raw)] > 1))
        first = out[0][0]
        if is_spoken_label(first):
            out[0] = (first, True, True)
        else:
            out.insert(0, (label_segment(first.lang), True, True))
        return out

    def _standard(self, engine: SynthesisEngine) -> Any:
        """The fallback's voice: the engine's own, never a clone that failed its checks."""
        from synthesis.voices import STANDARD

        return self.voices.resolve(self.options.house_voice if engine.needs_prompt else STANDARD)

    def _voice(self, item: BatchItem, engine: Any) -> Any:
        from synthesis.voices import STANDARD

        profile = item.voice.profile or STANDARD
        if profile == STANDARD and engine.needs_prompt:
            profile = self.options.house_voice
        # The enrolled emotion variant the plan chose (None: normal, prompt.wav).
        return self.voices.resolve(profile, getattr(item.voice, "emotion", None))

    def _material(
        self, engine: SynthesisEngine, voice: Any, instruct: Any, segment: Any
    ) -> dict[str, Any]:
        return {
            "engine": engine.version,
            "voice": voice.fingerprint,
            "style": instruct.key if instruct is not None and engine.name == "cosyvoice3" else "",
            "segment": segment.to_dict(),
        }

    def _render(
        self,
        item: BatchItem,
        engine: SynthesisEngine,
        voice: Any,
        instruct: Any,
        segments: list[tuple[Any, bool, bool]],
        attempt: int,
        warnings: list[str],
    ) -> Rendition:
        """Every segment from the cache or the engine, assembled and put through the gate.

        Post-processing of a fresh segment runs on a second thread while the engine
        renders the next one (CPU work overlapping the engine, as on the GPU pods).
        """
        from synthesis.audio import TELEPHONE_RATE, assemble
        from synthesis.labels import in_rate_window
        from synthesis.qc import check_notice

        pieces, engine_s, label = self._render_segments(
            item, engine, voice, instruct, segments, attempt, warnings
        )
        made = [cached for cached, _ in pieces]
        speech_s = sum(c.prepared.speech_s for c in made)
        cached_s = sum(c.prepared.speech_s for c, from_cache in pieces if from_cache)
        pauses = [segment.pause_after_ms for segment, _, _ in segments]
        master = assemble([(c.prepared.audio, p) for c, p in zip(made, pauses, strict=True)])
        telephone = assemble(
            [(c.prepared.telephone, p) for c, p in zip(made, pauses, strict=True)], TELEPHONE_RATE
        )
        similarity = None
        if self._speaks_a_clone(engine, voice):
            similarity = self._similarity(voice, master)
        qc = check_notice(
            texts=[(segment.text, segment.lang) for segment, _, _ in segments],
            speech_s=speech_s,
            clipped_fraction=max(c.prepared.clipped_fraction for c in made),
            telephone=telephone,
            similarity=similarity,
            thresholds=self.thresholds,
        )
        qc.metrics["label_rate_per_min"] = label.get("rate_per_min")
        if not in_rate_window(label.get("rate_per_min", 0.0)):
            qc.failures.append("label_rate")
        seeds = [c.seed for c in made]
        return Rendition(engine, master, telephone, qc, seeds, label, speech_s, cached_s, engine_s)

    def _render_segments(
        self,
        item: BatchItem,
        engine: SynthesisEngine,
        voice: Any,
        instruct: Any,
        segments: list[tuple[Any, bool, bool]],
        attempt: int,
        warnings: list[str],
    ) -> tuple[list[tuple[Any, bool]], float, dict[str, Any]]:
        """``(segment audio, from cache)`` per segment, the engine's seconds and the label."""
        from synthesis.cache import content_seed, retry_seed

        pieces: list[Any] = [None] * len(segments)
        fresh: dict[int, tuple[Future[Any], str, bool]] = {}
        engine_s = 0.0
        label: dict[str, Any] = {}
        for index, (segment, is_label, shared) in enumerate(segments):
            if is_label:
                cached, from_cache, spent = self._spoken_label(engine, voice, instruct, segment)
                engine_s += spent
                pieces[index] = (cached, from_cache)
                label = {
                    "spoken": True,
                    "source": "added" if len(segments) > len(item.segments) else "template",
                    "text": segment.text,
                    "rate_per_min": round(cached.rate_per_min or 0.0, 1),
                    "speed": round(cached.speed, 3),
                }
                continue
            material = self._material(engine, voice, instruct, segment)
            seed = content_seed(material) if attempt == 0 else retry_seed(item.seed, index, attempt)
            key = self.cache.key(material, seed)
            cached, corrupt = self.cache.get(key, look_in_store=shared)
            if corrupt and "segment_cache_corrupt" not in warnings:
                warnings.append("segment_cache_corrupt")
            if cached is not None:
                pieces[index] = (cached, True)
                continue
            raw, spent = self._engine_call(engine, voice, instruct, segment, seed)
            engine_s += spent
            fresh[index] = (
                self._post.submit(self._prepare, raw, engine.sample_rate, seed),
                key,
                shared,
            )
        for index, (future, key, shared) in fresh.items():
            cached = future.result()
            self.cache.put(key, cached, persist=shared, remember=shared)
            pieces[index] = (cached, False)
        return pieces, engine_s, label

    def _engine_call(
        self,
        engine: SynthesisEngine,
        voice: Any,
        instruct: Any,
        segment: Any,
        seed: int,
        speed: float = 1.0,
    ) -> tuple[np.ndarray, float]:
        from synthesis.engines.base import SegmentRejected

        started = time.perf_counter()
        raw = engine.synthesize(segment, voice, seed, instruct=instruct, speed=speed)
        spent = time.perf_counter() - started
        if raw is None or np.asarray(raw).size == 0:
            raise SegmentRejected("empty_audio", "the engine produced no samples")
        return np.asarray(raw, dtype=np.float32), spent

    @staticmethod
    def _prepare(raw: np.ndarray, rate: int, seed: int, speed: float = 1.0) -> Any:
        from synthesis.audio import prepare_segment
        from synthesis.cache import CachedSegment, quantize
        from synthesis.engines.base import SegmentRejected

        prepared = prepare_segment(raw, rate)
        if prepared.audio.size == 0:
            raise SegmentRejected("silent_audio", "the engine produced only silence")
        prepared = replace(
            prepared, audio=quantize(prepared.audio), telephone=quantize(prepared.telephone)
        )
        return CachedSegment(prepared, seed=seed, speed=speed)

    def _synthesize(
        self,
        engine: SynthesisEngine,
        voice: Any,
        instruct: Any,
        segment: Any,
        seed: int,
        speed: float = 1.0,
    ) -> tuple[Any, float]:
        raw, spent = self._engine_call(engine, voice, instruct, segment, seed, speed)
        return self._prepare(raw, engine.sample_rate, seed, speed), spent

    def _spoken_label(
        self, engine: SynthesisEngine, voice: Any, instruct: Any, segment: Any
    ) -> tuple[Any, bool, float]:
        """The label of an engine, voice and style: cached, or rendered at a calibrated speed."""
        from synthesis.cache import CachedSegment, content_seed
        from synthesis.labels import RATE_TARGET, in_rate_window, speaking_rate

        material = {**self._material(engine, voice, instruct, segment), "role": "spoken_label"}
        key = self.cache.key(material, seed=0)
        cached, _corrupt = self.cache.get(key, look_in_store=True)
        if cached is not None:
            return cached, True, 0.0
        seed = content_seed(material)
        speed, spent, best = 1.0, 0.0, None
        for _ in range(_LABEL_CALIBRATION_ROUNDS):
            rendered, took = self._synthesize(engine, voice, instruct, segment, seed, speed)
            spent += took
            rate = speaking_rate(segment.text, segment.lang, rendered.prepared.speech_s)
            best = CachedSegment(rendered.prepared, seed=seed, speed=speed, rate_per_min=rate)
            if in_rate_window(rate):
                break
            speed = speed * RATE_TARGET / rate
        assert best is not None
        self.cache.put(key, best, persist=True, remember=True)
        return best, False, spent

    def _speaks_a_clone(self, engine: SynthesisEngine, voice: Any) -> bool:
        """A consenting agent's voice cloned from their recording: the only case where
        the notice can sound like somebody else, so the only one the similarity check
        runs for (espeak-ng's own voices and variants clone nobody)."""
        return engine is self.engine and engine.needs_prompt and not voice.is_standard

    def _similarity(self, voice: Any, master: np.ndarray) -> float:
        from synthesis.audio import MASTER_RATE
        from synthesis.qc import cosine

        reference = self._references.get(voice.fingerprint)
        if reference is None:
            reference = self.speaker_encoder.embed(voice.prompt_audio, voice.prompt_rate)
            self._references[voice.fingerprint] = reference
        return cosine(self.speaker_encoder.embed(master, MASTER_RATE), reference)

    def _publish(
        self, item: BatchItem, key: str, rendition: Rendition
    ) -> tuple[str | None, int, int | None]:
        """Master first, telephone file last: the telephone key marks the item done.

        Returns the master's key and both files' sizes in bytes (None: no master kept).
        """
        from synthesis.audio import MASTER_RATE, encode_telephone, encode_wav
        from synthesis.labels import ImplicitLabel

        digest = key.rsplit("/", 1)[-1].removesuffix(".wav")
        implicit = ImplicitLabel(
            content_producer=self.options.producer,
            produce_id=str(item.ledger_id),
            content_propagator=self.options.propagator,
            propagate_id=f"vn-{item.notice_id}-{item.campaign_date}",
            reserved_code1=digest,
            reserved_code2=f"engine={rendition.engine.name};seeds={len(rendition.seeds)}",
        )
        comment = implicit.to_comment()
        rendition.label["implicit"] = "RIFF LIST/INFO ICMT"
        writes = []
        master_key, master_bytes = None, None
        container = self.options.kept_master
        if container is not None:
            master_key = f"{self.options.master_prefix}/{digest[:2]}/{digest}.{container.lower()}"
            master = encode_wav(rendition.master, MASTER_RATE, "PCM_16", comment, container)
            master_bytes = len(master)
            metadata = {"ledger-id": str(item.ledger_id)}
            writes.append((master_key, master, _CONTENT_TYPES[container], metadata))
        telephone = encode_telephone(rendition.telephone, self.options.law, comment)
        writes.append(
            (
                key,
                telephone,
                "audio/wav",
                {
                    "duration-s": f"{rendition.telephone.size / 8000:.3f}",
                    "engine": rendition.engine.version,
                    "bytes": str(len(telephone)),
                    "fallback": "1" if rendition.engine is not self.engine else "0",
                    "master-key": master_key or "",
                    "master-bytes": "" if master_bytes is None else str(master_bytes),
                    "ledger-id": str(item.ledger_id),
                },
            )
        )
        while len(self._pending) >= 16:  # bound the bytes waiting in memory
            self._pending.popleft().result()
        self._pending.append(self._io.submit(self._write_in_order, writes))
        return master_key, len(telephone), master_bytes

    def _write_in_order(self, writes: list[tuple[str, bytes, str, dict[str, str]]]) -> None:
        for key, body, content_type, metadata in writes:
            self.store.write(key, body, content_type, metadata)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
