"""Enrollment checks for a new voice recording, and the voice denylist.

A recording becomes a voice profile's prompt only if it passes every check, in
this order; the first failure is the rejection, with its reason code:

| reason code | check (defaults in :class:`EnrollmentThresholds`) |
| --- | --- |
| ``recording_unreadable`` | not a WAV/FLAC file soundfile can decode, or empty |
| ``recording_sample_rate_low`` | sample rate below 16 kHz |
| ``recording_too_short`` / ``recording_too_long`` | outside 3–30 s |
| ``recording_clipped`` | more than 0.1 % of samples in flat runs (≥ 3) at full scale |
| ``recording_no_speech`` | under 1.5 s of voiced frames (webrtcvad) or under 25 % voiced |
| ``recording_too_noisy`` | speech over noise under 20 dB, or a noise floor above −40 dBFS |
| ``recording_multiple_speakers`` | the recording's two halves sound like two voices (< 0.82) |
| ``transcript_missing`` | no transcript |
| ``denylist_name`` | speaker, profile id or transcript names a denylisted person or body |
| ``denylist_voice`` | speaker embedding close to a denylisted voice |

Thresholds were calibrated on this project's synthetic voices (espeak-ng variants
standing in for speakers; ``python -m voice_notify.voices.enrollment calibrate`` prints
the figures): see :data:`DENYLIST_SIMILARITY` and
:data:`SINGLE_SPEAKER_MIN_SIMILARITY` for the measured ranges. Recalibrate on real
recordings before trusting them for people.

The denylist is data: ``include/voices/denylist.yaml`` (names and, for voices, the
synthetic stand-in that produces the reference) and
``include/voices/denylist_embeddings.json`` (the reference embeddings, regenerated
with ``python -m voice_notify.voices.enrollment build-denylist``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import io
import json
import logging
import shutil
import subprocess
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from voice_notify.voices import registry as voice_profiles

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "resemblyzer-0.1.4"
VAD_RATE = 16000
_FRAME_S = 0.03

#: Cosine at or above which a voice counts as a denylisted one. Calibrated with
#: ``calibrate``: each stand-in against its reference (5 texts × pitch ±8, speed ±10 %,
#: each also as an 8 kHz μ-law copy; 150 pairs) 0.901–0.986; the four demo agents and
#: eight other espeak-ng variants against every reference (180 pairs) 0.515–0.823.
#: 0.86 is the midpoint (margins 0.04 either side).
DENYLIST_SIMILARITY = 0.86

#: Lowest cosine between the two halves of a recording for it to count as one speaker.
#: Calibrated with ``calibrate``: 12 espeak-ng voices × 5 texts × 3 styles (normal, warm
#: pitch 58 speed 0.92, serious pitch 44 speed 0.95), one speaker each: 0.848–0.957
#: (180 recordings, none rejected); the same texts with the second half spoken by the
#: next voice: 0.60–0.909, 44 of 60 rejected at 0.82. The ones let through are pairs of
#: same-sex variants the encoder itself scores 0.84–0.90 alike (m4/m5/m6, f1/f2):
#: voices it cannot tell apart. Margin to the worst single speaker: 0.028.
SINGLE_SPEAKER_MIN_SIMILARITY = 0.82


class RecordingRejected(Exception):
    """A recording or an enrollment request refused, with its reason code."""

    def __init__(self, reason_code: str, detail: str, metrics: Mapping[str, Any] | None = None):
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
        self.metrics = dict(metrics or {})


@dataclass(frozen=True)
class EnrollmentThresholds:
    """Bounds of the enrollment checks (units in the names).

    Speech and noise, measured on demo-agent recordings (espeak-ng f3, m7; 8.3 s) with
    white noise added: clean 39.7–78 dB estimated; true 30 dB → 26.4–27.2; 25 dB →
    20.8–22.6 (passes); 20 dB → 17.5–19.4 (rejected); noise alone, a 440 Hz tone and
    digital silence → 0 s voiced (``recording_no_speech``).
    """

    min_rate_hz: int = 16000
    min_duration_s: float = 3.0
    max_duration_s: float = 30.0
    clip_level: float = 0.985
    clip_run: int = 3
    max_clipped_fraction: float = 0.001
    min_speech_s: float = 1.5
    min_speech_fraction: float = 0.25
    min_snr_db: float = 20.0
    max_noise_dbfs: float = -40.0
    single_speaker_similarity: float = SINGLE_SPEAKER_MIN_SIMILARITY
    denylist_similarity: float = DENYLIST_SIMILARITY


@dataclass(frozen=True)
class RecordingReport:
    """What the checks measured on a recording that passed them."""

    sha256: str
    rate: int
    metrics: dict[str, Any] = field(default_factory=dict)


# -- reading and measuring ----------------------------------------------------------------


def read_recording(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a recording to mono float32; ``recording_unreadable`` when it cannot be."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, sf.LibsndfileError) as exc:
        raise RecordingRejected("recording_unreadable", str(exc)[:200]) from None
    if audio.size == 0:
        raise RecordingRejected("recording_unreadable", "no samples")
    return audio.mean(axis=1).astype(np.float32), int(rate)


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def clipped_fraction(audio: np.ndarray, level: float = 0.985, run: int = 3) -> float:
    """Share of samples in flat tops: runs of ``run`` or more samples at ``level`` or above.

    A loud recording touches full scale now and then; a clipped one stays there.
    """
    hot = np.abs(audio) >= level
    if not hot.any():
        return 0.0
    padded = np.concatenate(([0], hot.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    lengths = edges[1::2] - edges[0::2]
    return float(lengths[lengths >= run].sum() / audio.size)


def _frame_levels(audio16k: np.ndarray) -> np.ndarray:
    size = int(VAD_RATE * _FRAME_S)
    frames = audio16k[: audio16k.size // size * size].reshape(-1, size)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-5))  # floor −100 dBFS (digital silence)


def _voiced_frames(audio16k: np.ndarray, aggressiveness: int = 3) -> np.ndarray:
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    size = int(VAD_RATE * _FRAME_S)
    pcm = (np.clip(audio16k, -1, 1) * 32767).astype("<i2")
    count = pcm.size // size
    return np.array(
        [vad.is_speech(pcm[i * size : (i + 1) * size].tobytes(), VAD_RATE) for i in range(count)],
        dtype=bool,
    )


def speech_metrics(audio: np.ndarray, rate: int) -> dict[str, float]:
    """Voiced seconds and share (webrtcvad), speech and noise levels, their difference."""
    audio16k = _resample(audio, rate, VAD_RATE)
    levels = _frame_levels(audio16k)
    voiced = _voiced_frames(audio16k)[: levels.size]
    # Noise: the frames webrtcvad hears no speech in (pauses, lead-in); a recording
    # without pauses falls back to its quietest frames.
    quiet = levels[~voiced]
    noise_db = float(np.median(quiet)) if quiet.size >= 10 else float(np.percentile(levels, 5))
    # A voiced frame must also stand out of the floor: webrtcvad calls loud noise speech.
    voiced &= levels > noise_db + 6
    speech_db = float(np.median(levels[voiced])) if voiced.any() else noise_db
    return {
        "speech_s": round(float(voiced.sum()) * _FRAME_S, 3),
        "speech_fraction": round(float(voiced.mean()) if voiced.size else 0.0, 3),
        "speech_dbfs": round(speech_db, 1),
        "noise_dbfs": round(noise_db, 1),
        "snr_db": round(speech_db - noise_db, 1),
    }


# -- speaker embeddings ---------------------------------------------------------------------


@functools.cache
def speaker_encoder() -> Any:
    """resemblyzer's encoder, loaded once per process (its weights ship in the wheel)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise RuntimeError("enrollment needs resemblyzer: pip install resemblyzer==0.1.4") from exc
    return VoiceEncoder(device="cpu", verbose=False)


def _prepared(audio: np.ndarray, rate: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a scipy path resemblyzer uses
        from resemblyzer import preprocess_wav

    audio16k = _resample(audio, rate, VAD_RATE)
    wav = preprocess_wav(audio16k, source_sr=VAD_RATE)
    return wav if wav.size >= VAD_RATE // 2 else audio16k


def embed(audio: np.ndarray, rate: int) -> np.ndarray:
    """A unit-length speaker embedding (256 floats), prepared as the synthesis QC does."""
    return speaker_encoder().embed_utterance(_prepared(audio, rate)).astype(np.float32)


def speaker_consistency(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """The utterance embedding and the cosine between its two halves' embeddings.

    One speaker's halves score alike (different words, same voice); a recording that
    changes speaker part way scores lower. Of the measures tried (2-means over the 1.6 s
    windows, thirds, halves), halves varied least for one speaker: see
    :data:`SINGLE_SPEAKER_MIN_SIMILARITY`.
    """
    wav = _prepared(audio, rate)
    encoder = speaker_encoder()
    whole = encoder.embed_utterance(wav).astype(np.float32)
    half = wav.size // 2
    if half < VAD_RATE:  # under 2 s of speech: nothing to compare
        return whole, 1.0
    return whole, cosine(encoder.embed_utterance(wav[:half]), encoder.embed_utterance(wav[half:]))


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


# -- the checks -----------------------------------------------------------------------------


def check_recording(
    data: bytes, thresholds: EnrollmentThresholds = EnrollmentThresholds()
) -> RecordingReport:
    """Signal checks of a recording, without the speaker model (fast, no torch).

    :raises RecordingRejected: on the first failed check
    """
    audio, rate = read_recording(data)
    metrics: dict[str, Any] = {"rate_hz": rate, "duration_s": round(audio.size / rate, 3)}

    def reject(code: str, detail: str) -> RecordingRejected:
        return RecordingRejected(code, detail, metrics)

    if rate < thresholds.min_rate_hz:
        raise reject("recording_sample_rate_low", f"{rate} Hz < {thresholds.min_rate_hz} Hz")
    duration = metrics["duration_s"]
    if duration < thresholds.min_duration_s:
        raise reject("recording_too_short", f"{duration} s < {thresholds.min_duration_s} s")
    if duration > thresholds.max_duration_s:
        raise reject("recording_too_long", f"{duration} s > {thresholds.max_duration_s} s")
    clipped = clipped_fraction(audio, thresholds.clip_level, thresholds.clip_run)
    metrics["clipped_fraction"] = round(clipped, 5)
    if clipped > thresholds.max_clipped_fraction:
        raise reject("recording_clipped", f"{clipped:.4%} of samples clipped")
    metrics.update(speech_metrics(audio, rate))
    if (
        metrics["speech_s"] < thresholds.min_speech_s
        or metrics["speech_fraction"] < thresholds.min_speech_fraction
    ):
        raise reject(
            "recording_no_speech",
            f"{metrics['speech_s']} s voiced ({metrics['speech_fraction']:.0%})",
        )
    if (
        metrics["snr_db"] < thresholds.min_snr_db
        or metrics["noise_dbfs"] > thresholds.max_noise_dbfs
    ):
        raise reject(
            "recording_too_noisy",
            f"speech {metrics['snr_db']} dB over noise at {metrics['noise_dbfs']} dBFS",
        )
    return RecordingReport(hashlib.sha256(data).hexdigest(), rate, metrics)


def check_speaker(
    data: bytes, thresholds: EnrollmentThresholds = EnrollmentThresholds()
) -> tuple[np.ndarray, dict[str, Any]]:
    """The speaker embedding of a recording that holds one speaker.

    :raises RecordingRejected: ``recording_multiple_speakers``
    """
    audio, rate = read_recording(data)
    embedding, alike = speaker_consistency(audio, rate)
    metrics = {"halves_similarity": round(alike, 4)}
    if alike < thresholds.single_speaker_similarity:
        raise RecordingRejected(
            "recording_multiple_speakers",
            f"two voices {alike:.3f} alike (< {thresholds.single_speaker_similarity})",
            metrics,
        )
    return embedding, metrics


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


# -- synthetic recordings (demo agents and denylist stand-ins) --------------------------------


@dataclass(frozen=True)
class SyntheticVoice:
    """An espeak-ng rendering standing in for a person: variant, pitch (0–99), speed."""

    variant: str
    pitch: int = 50
    speed: float = 1.0


def render_synthetic(text: str, lang: str, voice: SyntheticVoice) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng (through the project's text frontend), peak at −3 dBFS.

    espeak-ng is deterministic: the same text and voice give the same samples.
    """
    import soundfile as sf

    from synthesis.text import Segment, render_espeak

    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng not found; install it with `apt-get install espeak-ng`")
    espeak_voice, espeak_text = render_espeak(Segment(text=text, lang=lang))
    wpm = str(round(175 * voice.speed))
    with tempfile.TemporaryDirectory(prefix="vn-enroll-") as tmp:
        path = Path(tmp) / "voice.wav"
        command = [binary, "-v", f"{espeak_voice}+{voice.variant}", "-p", str(voice.pitch)]
        subprocess.run(
            [*command, "-s", wpm, "-w", str(path), "--stdin"],
            input=espeak_text,
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        audio, rate = sf.read(path, dtype="float32")
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio * (0.708 / peak)).astype(np.float32), int(rate)


def wav_bytes(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


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


# -- the enrollment flow ------------------------------------------------------------------

#: A warm or serious variant must be the profile's own speaker: the same bar as the
#: denylist (same voice at pitch ±8 / speed ±10 % scored 0.901 or more, see above).
VARIANT_SAME_SPEAKER = DENYLIST_SIMILARITY


@dataclass(frozen=True)
class EnrollmentRequest:
    """One recording offered as one emotion variant of a profile.

    :param consent: required when the profile has no consent yet
    """

    profile: voice_profiles.ProfileSpec
    emotion: str
    transcript: str
    consent: voice_profiles.ConsentRecord | None = None

    def __post_init__(self) -> None:
        if self.emotion not in voice_profiles.EMOTIONS:
            raise ValueError(f"emotion must be one of {voice_profiles.EMOTIONS}")
        if self.consent is not None and self.consent.profile_id != self.profile.profile_id:
            raise ValueError("the consent belongs to another profile")


@dataclass(frozen=True)
class EnrollmentOutcome:
    profile_id: str
    emotion: str
    sha256: str
    enrolled: bool
    reason_code: str | None = None
    detail: str = ""
    consent_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def validate(
    conn: sa.Connection,
    request: EnrollmentRequest,
    data: bytes,
    denylist: Denylist,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
) -> RecordingReport:
    """Signal checks, the denylist by name, and the prerequisites in the registry.

    :raises RecordingRejected: the first failed check
    """
    report = check_recording(data, thresholds)
    if not request.transcript.strip():
        raise RecordingRejected("transcript_missing", "a prompt needs its transcript")
    check_denylist(
        denylist,
        speaker=request.profile.speaker,
        profile_id=request.profile.profile_id,
        transcript=request.transcript,
        embedding=None,
    )
    row = voice_profiles.profile_row(conn, request.profile.profile_id)
    if row is not None and row.status == voice_profiles.ProfileStatus.DENIED:
        raise RecordingRejected(voice_profiles.VOICE_PROFILE_DENIED, "the profile is denied")
    has_consent = request.consent is not None or bool(
        voice_profiles.consents_of(conn, request.profile.profile_id)
    )
    if not has_consent:
        raise RecordingRejected(voice_profiles.VOICE_CONSENT_MISSING, "no consent record")
    if request.emotion != "normal" and (row is None or not row.embedding):
        raise RecordingRejected("profile_not_enrolled", "enroll the normal variant first")
    return report


def screen_speaker(
    conn: sa.Connection,
    request: EnrollmentRequest,
    data: bytes,
    denylist: Denylist,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embedding, single speaker, denylisted voices, and (variants) the profile's speaker.

    :raises RecordingRejected: ``recording_multiple_speakers``, ``denylist_voice`` or
        ``variant_speaker_mismatch``
    """
    embedding, metrics = check_speaker(data, thresholds)
    metrics.update(
        check_denylist(
            denylist,
            speaker=request.profile.speaker,
            profile_id=request.profile.profile_id,
            transcript=request.transcript,
            embedding=embedding,
        )
    )
    if request.emotion != "normal":
        row = voice_profiles.profile_row(conn, request.profile.profile_id)
        alike = cosine(embedding, json.loads(row.embedding))
        metrics["profile_similarity"] = round(alike, 4)
        if alike < VARIANT_SAME_SPEAKER:
            raise RecordingRejected(
                "variant_speaker_mismatch",
                f"{alike:.3f} to the profile's voice (< {VARIANT_SAME_SPEAKER})",
                metrics,
            )
    return embedding, metrics


def reject(
    conn: sa.Connection,
    request: EnrollmentRequest,
    sha256: str,
    on: dt.date,
    rejection: RecordingRejected,
) -> EnrollmentOutcome:
    """Record a rejection; a denylisted voice or name also marks the profile denied."""
    if rejection.reason_code in ("denylist_name", "denylist_voice"):
        voice_profiles.deny_profile(conn, request.profile, on, rejection.reason_code)
    voice_profiles.record_enrollment(
        conn,
        profile_id=request.profile.profile_id,
        emotion=request.emotion,
        recording_sha256=sha256,
        on=on,
        reason_code=rejection.reason_code,
        detail=rejection.detail,
        metrics=rejection.metrics,
    )
    log.info(
        "voice profile %s (%s): rejected reason=%s %s",
        request.profile.profile_id,
        request.emotion,
        rejection.reason_code,
        rejection.detail,
    )
    return EnrollmentOutcome(
        request.profile.profile_id,
        request.emotion,
        sha256,
        False,
        rejection.reason_code,
        rejection.detail,
        metrics=rejection.metrics,
    )


def store(
    conn: sa.Connection,
    s3_client: Any,
    bucket: str,
    request: EnrollmentRequest,
    data: bytes,
    embedding: Sequence[float],
    metrics: Mapping[str, Any],
    on: dt.date,
    *,
    extra: Mapping[str, Any] | None = None,
) -> EnrollmentOutcome:
    """Record the profile, variant and consent, and publish the profile's S3 objects.

    Safe to run twice: the rows are upserts or insert-if-absent, the objects are
    rewritten only when they differ.
    """
    spec = request.profile
    sha256 = hashlib.sha256(data).hexdigest()
    voice_profiles.upsert_profile(conn, spec, on)
    if request.consent is not None:
        voice_profiles.record_consent(conn, request.consent)
    key = voice_profiles.profile_key(spec.profile_id, voice_profiles.prompt_file(request.emotion))
    voice_profiles.put_if_changed(s3_client, bucket, key, data, "audio/wav")
    variant = {
        "prompt_key": key,
        "prompt_text": request.transcript,
        "sha256": sha256,
        "duration_s": metrics.get("duration_s"),
    }
    normal = request.emotion == "normal"
    voice_profiles.set_variant(
        conn,
        spec.profile_id,
        request.emotion,
        variant,
        embedding=embedding if normal else None,
        embedding_model=EMBEDDING_MODEL if normal else None,
    )
    voice_profiles.record_enrollment(
        conn,
        profile_id=spec.profile_id,
        emotion=request.emotion,
        recording_sha256=sha256,
        on=on,
        reason_code=None,
        metrics=metrics,
    )
    consent_id = publish_profile_document(conn, s3_client, bucket, spec, extra=extra)
    log.info(
        "voice profile %s (%s): enrolled, consent %s", spec.profile_id, request.emotion, consent_id
    )
    return EnrollmentOutcome(
        spec.profile_id, request.emotion, sha256, True, consent_id=consent_id, metrics=dict(metrics)
    )


def publish_profile_document(
    conn: sa.Connection,
    s3_client: Any,
    bucket: str,
    spec: voice_profiles.ProfileSpec,
    *,
    extra: Mapping[str, Any] | None = None,
) -> str | None:
    """Write ``voices/<id>/profile.json`` from the registry; returns its consent id.

    The consent id is the latest granted one not revoked. A profile left without one
    (every consent revoked, or the profile retired) is republished without
    ``consent_id``, so the synthesis worker refuses it too: the registry decides at
    plan and dial time, the worker is the last line. Nothing is written before the
    normal variant exists.
    """
    row = voice_profiles.profile_row(conn, spec.profile_id)
    variants = json.loads(row.variants or "{}") if row is not None else {}
    if "normal" not in variants:
        return None
    usable = [c for c in voice_profiles.consents_of(conn, spec.profile_id) if c.revoked_at is None]
    active = row.status == voice_profiles.ProfileStatus.ACTIVE
    consent_id = usable[0].consent_id if usable and active else None
    document = voice_profiles.profile_document(
        spec, consent_id, variants, embedding_model=row.embedding_model, extra=extra
    )
    body = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
    key = voice_profiles.profile_key(spec.profile_id, "profile.json")
    voice_profiles.put_if_changed(s3_client, bucket, key, body, "application/json")
    return consent_id


def republish_profile(conn: sa.Connection, s3_client: Any, bucket: str, profile_id: str) -> bool:
    """Rewrite a profile's ``profile.json`` after a revocation or a status change.

    Call it after :func:`voice_notify.voices.registry.revoke_consent`; returns whether the
    published profile still carries a consent. Other fields of the published document
    (e.g. the demo's ``espeak_variant``) are kept.
    """
    row = voice_profiles.profile_row(conn, profile_id)
    if row is None:
        return False
    key = voice_profiles.profile_key(profile_id, "profile.json")
    try:
        current = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3_client.exceptions.NoSuchKey:
        current = {}
    spec = voice_profiles.ProfileSpec(
        profile_id,
        row.speaker,
        row.language,
        tuple(json.loads(row.locales)),
        tuple(json.loads(row.notice_types)),
    )
    known = {"prompt_text", "lang", "speaker", "locales", "notice_types", "variants"}
    extra = {k: v for k, v in current.items() if k not in known | {"embedding_model"}}
    return publish_profile_document(conn, s3_client, bucket, spec, extra=extra) is not None


def enroll(
    engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    request: EnrollmentRequest,
    data: bytes,
    on: dt.date,
    *,
    denylist: Denylist | None = None,
    thresholds: EnrollmentThresholds = EnrollmentThresholds(),
    extra: Mapping[str, Any] | None = None,
) -> EnrollmentOutcome:
    """Validate → embed → store in one call (the DAG runs the three as tasks).

    A rejected recording is recorded with its reason and returned, not raised.
    """
    denylist = denylist or load_denylist()
    sha256 = hashlib.sha256(data).hexdigest()
    voice_profiles.ensure_schema(engine)
    try:
        with engine.connect() as conn:
            report = validate(conn, request, data, denylist, thresholds)
            embedding, speaker_metrics = screen_speaker(conn, request, data, denylist, thresholds)
    except RecordingRejected as rejection:
        with engine.begin() as conn:
            return reject(conn, request, sha256, on, rejection)
    with engine.begin() as conn:
        return store(
            conn,
            s3_client,
            bucket,
            request,
            data,
            embedding,
            {**report.metrics, **speaker_metrics},
            on,
            extra=extra,
        )


# -- the demo agents ------------------------------------------------------------------------


def _demo_requests(
    profile_id: str, config: Mapping[str, Any]
) -> list[tuple[EnrollmentRequest, SyntheticVoice]]:
    spec = voice_profiles.ProfileSpec(
        profile_id=profile_id,
        speaker=config["speaker"],
        language=config.get("lang", "cmn"),
        locales=tuple(config["locales"]),
        notice_types=tuple(config["notice_types"]),
    )
    raw = config["consent"]
    consent = voice_profiles.ConsentRecord(
        consent_id=config["consent_id"],
        profile_id=profile_id,
        consented_by=raw["consented_by"],
        granted_on=dt.date.fromisoformat(raw["granted_on"]),
        expires_on=dt.date.fromisoformat(raw["expires_on"]) if raw.get("expires_on") else None,
        notice_types=tuple(raw["notice_types"]),
        locales=tuple(raw["locales"]),
        document_ref=raw["document_ref"],
    )
    variant = config["espeak_variant"]
    requests = [
        (
            EnrollmentRequest(spec, "normal", config["prompt_text"], consent),
            SyntheticVoice(variant),
        )
    ]
    for emotion in ("warm", "serious"):
        v = config["variants"][emotion]
        requests.append(
            (
                EnrollmentRequest(spec, emotion, v["prompt_text"]),
                SyntheticVoice(variant, int(v["pitch"]), float(v["speed"])),
            )
        )
    return requests


def enroll_demo_profiles(
    ledger_engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    on_date: dt.date,
    include_dir: Path | None = None,
) -> list[str]:
    """Enroll the four demo agents (``include/voices/<id>/profile.json``) with consent.

    Their recordings are rendered with espeak-ng (deterministic: same bytes every run),
    so nothing binary is committed. Idempotent: a variant whose recording is already
    enrolled skips the checks and the embedding; the S3 objects are (re)published when
    missing or different (the demo's S3 starts empty each run). Returns the ids of the
    profiles enrolled (all four, unless a check rejected one: that is logged and
    recorded in ``voice_enrollments``).

    :param s3_client: a boto3 S3 client (in Airflow: ``S3Hook(...).get_conn()``)
    """
    voice_profiles.ensure_schema(ledger_engine)
    denylist = load_denylist(include_dir)
    folder = _voices_dir(include_dir)
    enrolled = []
    for path in sorted(folder.glob("*/profile.json")):
        profile_id = path.parent.name
        config = json.loads(path.read_text(encoding="utf-8"))
        extra = {"espeak_variant": config["espeak_variant"]}
        ok = True
        for request, voice in _demo_requests(profile_id, config):
            audio, rate = render_synthetic(request.transcript, request.profile.language, voice)
            data = wav_bytes(audio, rate)
            if _already_enrolled(ledger_engine, request, data):
                continue
            outcome = enroll(
                ledger_engine,
                s3_client,
                bucket,
                request,
                data,
                on_date,
                denylist=denylist,
                extra=extra,
            )
            ok = ok and outcome.enrolled
            if not ok:
                break
        if ok:
            _republish(ledger_engine, s3_client, bucket, profile_id, config, include_dir, extra)
            enrolled.append(profile_id)
    return enrolled


def _already_enrolled(engine: sa.Engine, request: EnrollmentRequest, data: bytes) -> bool:
    with engine.connect() as conn:
        row = voice_profiles.profile_row(conn, request.profile.profile_id)
    if row is None or row.status != voice_profiles.ProfileStatus.ACTIVE:
        return False
    variant = json.loads(row.variants or "{}").get(request.emotion) or {}
    return variant.get("sha256") == hashlib.sha256(data).hexdigest()


def _republish(
    engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    profile_id: str,
    config: Mapping[str, Any],
    include_dir: Path | None,
    extra: Mapping[str, Any],
) -> None:
    """Put back every object of an enrolled demo profile (rendered again, same bytes)."""
    for request, voice in _demo_requests(profile_id, config):
        audio, rate = render_synthetic(request.transcript, request.profile.language, voice)
        key = voice_profiles.profile_key(profile_id, voice_profiles.prompt_file(request.emotion))
        voice_profiles.put_if_changed(s3_client, bucket, key, wav_bytes(audio, rate), "audio/wav")
    with engine.connect() as conn:
        publish_profile_document(
            conn, s3_client, bucket, _demo_requests(profile_id, config)[0][0].profile, extra=extra
        )


# -- the voice_profile_enroll DAG's tasks -------------------------------------------------


def request_from_params(params: Mapping[str, Any]) -> EnrollmentRequest:
    """The DAG's params as an enrollment request (consent fields optional for variants)."""
    spec = voice_profiles.ProfileSpec(
        profile_id=params["profile_id"],
        speaker=params["speaker"],
        language=params.get("language") or "cmn",
        locales=tuple(params.get("locales") or ()),
        notice_types=tuple(params.get("notice_types") or ()),
    )
    consent = None
    if params.get("consent_id"):
        expires = params.get("consent_expires_on")
        consent = voice_profiles.ConsentRecord(
            consent_id=params["consent_id"],
            profile_id=spec.profile_id,
            consented_by=params["consented_by"],
            granted_on=dt.date.fromisoformat(params["consent_granted_on"]),
            expires_on=dt.date.fromisoformat(expires) if expires else None,
            notice_types=tuple(params.get("consent_notice_types") or spec.notice_types),
            locales=tuple(params.get("consent_locales") or spec.locales),
            document_ref=params["consent_document_ref"],
        )
    return EnrollmentRequest(spec, params.get("emotion") or "normal", params["transcript"], consent)


def read_source(recording: str, transcript: str, language: str) -> bytes:
    """The recording named by the DAG's ``recording`` param.

    ``s3://bucket/key``; ``include:<path>`` under the include folder; ``synthetic:<variant>``
    renders the transcript with espeak-ng (demo and trials only); else a key in the bucket.
    """
    from voice_notify.airflow import storage
    from voice_notify.settings import get_settings

    if recording.startswith("synthetic:"):
        audio, rate = render_synthetic(transcript, language, SyntheticVoice(recording[10:]))
        return wav_bytes(audio, rate)
    if recording.startswith("include:"):
        root = get_settings().include_dir.resolve()
        path = (root / recording[8:]).resolve()
        if root not in path.parents:
            raise RecordingRejected("recording_unreadable", "include: path leaves include/")
        return path.read_bytes()
    if recording.startswith("s3://"):
        bucket, _, key = recording[5:].partition("/")
        return storage.s3_hook().get_conn().get_object(Bucket=bucket, Key=key)["Body"].read()
    return storage.read_bytes(recording)


def _task_context() -> tuple[sa.Engine, Any, str]:
    from voice_notify import db
    from voice_notify.airflow import storage
    from voice_notify.settings import get_settings

    engine = db.engine_for(get_settings().ledger_conn_id)
    voice_profiles.ensure_schema(engine)
    return engine, storage.s3_hook().get_conn(), storage.ensure_bucket()


def _fail(engine: sa.Engine, request: EnrollmentRequest, sha: str, on: dt.date, exc) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with engine.begin() as conn:
        reject(conn, request, sha, on, exc)
    # A rejected recording is permanent: retrying the same bytes cannot pass.
    raise AirflowFailException(f"recording rejected: {exc.reason_code}: {exc.detail}")


def staging_key(profile_id: str, sha256: str) -> str:
    return voice_profiles.profile_key(profile_id, f"enroll/{sha256}.wav")


def validate_task(params: Mapping[str, Any], on: dt.date) -> dict[str, Any]:
    """Read, stage (``voices/<id>/enroll/<sha256>.wav``) and check the recording."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = read_source(params["recording"], request.transcript, request.profile.language)
    sha = hashlib.sha256(data).hexdigest()
    key = staging_key(request.profile.profile_id, sha)
    voice_profiles.put_if_changed(s3_client, bucket, key, data, "audio/wav")
    try:
        with engine.connect() as conn:
            report = validate(conn, request, data, load_denylist())
    except RecordingRejected as exc:
        _fail(engine, request, sha, on, exc)
    return {"staged_key": key, "sha256": sha, "metrics": report.metrics}


def embed_task(params: Mapping[str, Any], staged: Mapping[str, Any], on: dt.date) -> dict:
    """Speaker embedding and screening; the embedding goes to S3 beside the staged file."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = s3_client.get_object(Bucket=bucket, Key=staged["staged_key"])["Body"].read()
    try:
        with engine.connect() as conn:
            embedding, metrics = screen_speaker(conn, request, data, load_denylist())
    except RecordingRejected as exc:
        _fail(engine, request, staged["sha256"], on, exc)
    key = staged["staged_key"].removesuffix(".wav") + ".embedding.json"
    body = json.dumps({"model": EMBEDDING_MODEL, "embedding": [float(x) for x in embedding]})
    voice_profiles.put_if_changed(s3_client, bucket, key, body.encode(), "application/json")
    return {**staged, "embedding_key": key, "metrics": {**staged["metrics"], **metrics}}


def store_task(params: Mapping[str, Any], embedded: Mapping[str, Any], on: dt.date) -> dict:
    """Record the profile, variant and consent; publish ``voices/<id>/``."""
    engine, s3_client, bucket = _task_context()
    request = request_from_params(params)
    data = s3_client.get_object(Bucket=bucket, Key=embedded["staged_key"])["Body"].read()
    raw = s3_client.get_object(Bucket=bucket, Key=embedded["embedding_key"])["Body"].read()
    embedding = json.loads(raw)["embedding"]
    with engine.begin() as conn:
        outcome = store(conn, s3_client, bucket, request, data, embedding, embedded["metrics"], on)
    return {
        "profile_id": outcome.profile_id,
        "emotion": outcome.emotion,
        "consent_id": outcome.consent_id,
        "sha256": outcome.sha256,
    }


# -- calibration --------------------------------------------------------------------------

_CALIBRATION_TEXTS = (
    "您好，我是您的客户经理，很高兴为您服务，有任何问题都可以随时联系我。",
    "您本月的还款日是十二月五日，应还金额三千二百八十元，请按时还款。",
    "您的保单将于下月到期，如需续保请回复一，或拨打客服热线咨询。",
    "您好，感谢您一直以来的信任，祝您生活愉快，有需要随时找我。",
    "您好，这是一条重要提醒，请您务必留意相关事项，并按时办理。",
)


def _telephone_copy(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    narrow = _resample(audio, rate, 8000)
    data = wav_bytes(narrow, 8000, "ULAW")
    back, _ = sf.read(io.BytesIO(data), dtype="float32")
    return back, 8000


#: espeak-ng variants that play innocent speakers in the calibration (besides the agents).
_INNOCENT_VARIANTS = ("f1", "f2", "f4", "m1", "m2", "m4", "m5", "m6")


def calibrate(include_dir: Path | None = None) -> dict[str, Any]:
    """Similarity figures behind the two thresholds, on the project's synthetic voices.

    Denylist: each stand-in's texts at pitch ±8 and speed ±10 %, each also as an 8 kHz
    μ-law copy, against its reference (same voice); the demo agents and other espeak-ng
    variants against every reference (innocent voices). Speakers: each text in each voice
    in three styles (one speaker), and each text's first half in one voice joined to
    another text's second half in the next voice (two speakers).
    """
    agents = [
        json.loads(p.read_text("utf-8"))["espeak_variant"]
        for p in sorted(_voices_dir(include_dir).glob("*/profile.json"))
    ]
    stand_ins = {r["id"]: r["stand_in"] for r in _yaml_entries(include_dir) if r.get("stand_in")}
    denylist = load_denylist(include_dir)
    refs = {e.id: np.asarray(e.reference) for e in denylist.entries if e.reference}
    same: list[float] = []
    for entry_id, spec in stand_ins.items():
        for text in _CALIBRATION_TEXTS:
            for pitch_shift, speed in ((0, 1.0), (8, 1.0), (-8, 1.0), (0, 0.9), (0, 1.1)):
                voice = SyntheticVoice(spec["variant"], spec.get("pitch", 50) + pitch_shift, speed)
                audio, rate = render_synthetic(text, "cmn", voice)
                for a, r in ((audio, rate), _telephone_copy(audio, rate)):
                    same.append(cosine(embed(a, r), refs[entry_id]))
    innocent: list[float] = []
    voices = list(agents) + list(_INNOCENT_VARIANTS)
    rendered = {
        v: [render_synthetic(t, "cmn", SyntheticVoice(v)) for t in _CALIBRATION_TEXTS]
        for v in voices
    }
    for variant in voices:
        for audio, rate in rendered[variant]:
            vec = embed(audio, rate)
            innocent += [cosine(vec, ref) for ref in refs.values()]
    single: list[float] = []
    spliced: list[float] = []
    styles = (
        SyntheticVoice("", 50, 1.0),
        SyntheticVoice("", 58, 0.92),
        SyntheticVoice("", 44, 0.95),
    )
    for variant in voices:
        for text in _CALIBRATION_TEXTS:
            for style in styles:
                voice = SyntheticVoice(variant, style.pitch, style.speed)
                single.append(speaker_consistency(*render_synthetic(text, "cmn", voice))[1])
    for a_variant, b_variant in zip(voices, voices[1:] + voices[:1], strict=True):
        for index, (a, rate) in enumerate(rendered[a_variant]):
            b, _ = rendered[b_variant][(index + 1) % len(_CALIBRATION_TEXTS)]
            joined = np.concatenate([a[: a.size // 2], b[b.size // 2 :]])
            spliced.append(speaker_consistency(joined, rate)[1])
    return {
        "denylist_same_voice": _summary(same),
        "denylist_innocent_voices": _summary(innocent),
        "one_speaker_halves_similarity": _summary(single),
        "two_speakers_halves_similarity": _summary(spliced),
        "two_speakers_rejected": sum(x < SINGLE_SPEAKER_MIN_SIMILARITY for x in spliced),
    }


def _summary(values: Iterable[float]) -> dict[str, float]:
    values = list(values)
    return {
        "n": len(values),
        "min": round(min(values), 4),
        "mean": round(float(np.mean(values)), 4),
        "max": round(max(values), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="voice enrollment: denylist and calibration")
    parser.add_argument("what", choices=("build-denylist", "calibrate"))
    parser.add_argument("--include-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.what == "build-denylist":
        body = build_denylist_embeddings(args.include_dir)
        target = _voices_dir(args.include_dir) / "denylist_embeddings.json"
        target.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {len(body['embeddings'])} reference embeddings to {target}")
    else:
        print(json.dumps(calibrate(args.include_dir), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
