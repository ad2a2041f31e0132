"""Voice profiles: who speaks a notice.

A batch item names a profile in ``voice.profile``. ``standard`` is the engine's own
voice; any other id resolves to assets under an S3 prefix::

    voices/<profile>/profile.json   {"consent_id": ..., "prompt_text": ..., "lang": ...,
                                     "espeak_variant": "f3" (optional)}
    voices/<profile>/prompt.wav     the consenting speaker's reference recording
    voices/<profile>/prompt-<emotion>.wav  an enrolled emotion variant (warm, serious),
                                     listed in profile.json's ``variants`` with its
                                     ``prompt`` file and ``prompt_text``

A profile without a recorded consent is refused (DESIGN: voice profiles only with a
recorded consent). A full registry with versions is a later issue; here a profile's
fingerprint (hash of both files) keys every cache that depends on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from synthesis.store import TransientStorageError

STANDARD = "standard"
_PROFILE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class VoiceProfileError(Exception):
    """The profile cannot be used; the item fails with ``reason_code``."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


@dataclass(frozen=True)
class VoiceProfile:
    """A resolved voice: the engine's own (``standard``) or a consenting speaker's clone.

    :param prompt_wav: local path of the reference recording (None for ``standard``)
    :param prompt_audio: the recording as float32 mono, with ``prompt_rate``
    """

    id: str
    fingerprint: str
    consent_id: str | None = None
    emotion: str | None = None  # the emotion variant resolved (None: normal)
    prompt_text: str = ""
    lang: str = "cmn"
    espeak_variant: str | None = None
    prompt_wav: pathlib.Path | None = None
    prompt_audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    prompt_rate: int = 0

    @property
    def is_standard(self) -> bool:
        return self.prompt_wav is None


STANDARD_PROFILE = VoiceProfile(id=STANDARD, fingerprint=STANDARD)


class ObjectReader(Protocol):
    def read(self, key: str) -> bytes: ...


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class VoiceLibrary:
    """Resolves profile ids to local assets, once per profile and process."""

    def __init__(self, store: ObjectReader, workdir: pathlib.Path, prefix: str = "voices") -> None:
        self._store = store
        self._workdir = workdir
        self._prefix = prefix.rstrip("/")
        self._resolved: dict[str, VoiceProfile | VoiceProfileError] = {}

    def resolve(self, profile_id: str, emotion: str | None = None) -> VoiceProfile:
        """The profile ``profile_id`` speaking its ``emotion`` variant (None or ``normal``:
        ``prompt.wav``); :class:`VoiceProfileError` when missing or unusable, with
        ``voice_variant_missing`` for a variant the profile has not published.

        Storage outages are not caught here: they are transient and stop the batch.
        """
        if profile_id == STANDARD:
            return STANDARD_PROFILE
        emotion = None if emotion in (None, "normal") else emotion
        cache_key = f"{profile_id}/{emotion or 'normal'}"
        known = self._resolved.get(cache_key)
        if known is None:
            try:
                known = self._load(profile_id, emotion)
            except VoiceProfileError as exc:
                known = exc
            self._resolved[cache_key] = known
        if isinstance(known, VoiceProfileError):
            raise known
        return known

    def _fetch(self, profile_id: str, name: str) -> bytes:
        try:
            return self._store.read(f"{self._prefix}/{profile_id}/{name}")
        except TransientStorageError:
            raise
        except Exception as exc:
            if _is_missing(exc):
                raise VoiceProfileError(
                    "voice_profile_missing", f"{profile_id}: no {name}"
                ) from None
            raise VoiceProfileError(
                "voice_profile_unreadable", f"{profile_id}/{name}: {exc}"
            ) from exc

    def _variant(
        self, profile_id: str, config: dict[str, Any], emotion: str | None
    ) -> tuple[str, str]:
        """``(prompt file, prompt text)`` of a variant (the normal one: the profile's own)."""
        if emotion is None:
            return "prompt.wav", config.get("prompt_text", "")
        variant = (config.get("variants") or {}).get(emotion)
        if not isinstance(variant, dict) or not variant.get("prompt"):
            raise VoiceProfileError("voice_variant_missing", f"{profile_id}: no {emotion} variant")
        prompt = str(variant["prompt"])
        if "/" in prompt or not prompt.endswith(".wav"):
            raise VoiceProfileError("voice_profile_unreadable", f"{profile_id}: bad {emotion}")
        return prompt, variant.get("prompt_text", "")

    def _load(self, profile_id: str, emotion: str | None = None) -> VoiceProfile:
        if not _PROFILE_ID.match(profile_id):
            raise VoiceProfileError("voice_profile_invalid", repr(profile_id)[:80])
        raw_json = self._fetch(profile_id, "profile.json")
        try:
            config: dict[str, Any] = json.loads(raw_json)
            if not isinstance(config, dict):
                raise ValueError("profile.json is not an object")
        except ValueError as exc:
            raise VoiceProfileError("voice_profile_unreadable", f"{profile_id}: {exc}") from None
        prompt_file, prompt_text = self._variant(profile_id, config, emotion)
        raw_wav = self._fetch(profile_id, prompt_file)
        try:
            audio, rate = sf.read(io.BytesIO(raw_wav), dtype="float32", always_2d=True)
        except (ValueError, RuntimeError, sf.LibsndfileError) as exc:
            raise VoiceProfileError("voice_profile_unreadable", f"{profile_id}: {exc}") from None
        if audio.shape[0] < rate // 2:
            raise VoiceProfileError("voice_profile_unreadable", f"{profile_id}: prompt too short")
        if not config.get("consent_id"):
            raise VoiceProfileError("voice_profile_no_consent", profile_id)
        if not str(prompt_text).strip():
            raise VoiceProfileError("voice_profile_unreadable", f"{profile_id}: no prompt_text")
        fingerprint = hashlib.sha256(raw_json + b"\0" + raw_wav).hexdigest()[:16]
        local = self._workdir / profile_id / f"{fingerprint}.wav"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(raw_wav)
        return VoiceProfile(
            id=profile_id,
            fingerprint=fingerprint,
            consent_id=str(config["consent_id"]),
            emotion=emotion,
            prompt_text=str(prompt_text),
            lang=str(config.get("lang", "cmn")),
            espeak_variant=config.get("espeak_variant"),
            prompt_wav=local,
            prompt_audio=audio.mean(axis=1).astype(np.float32),
            prompt_rate=rate,
        )


def profile_objects(config: dict[str, Any], prompt_wav: bytes) -> dict[str, bytes]:
    """The two objects of a profile, by file name (for publishing a profile to S3)."""
    return {
        "profile.json": json.dumps(config, ensure_ascii=False, indent=2).encode("utf-8"),
        "prompt.wav": prompt_wav,
    }


def demo_profile_configs(include_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    """``include/voices/<profile>/profile.json`` of the demo profiles, by profile id."""
    return {
        path.parent.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((include_dir / "voices").glob("*/profile.json"))
    }


def render_demo_prompt(engine: Any, config: dict[str, Any]) -> bytes:
    """A demo profile's ``prompt.wav``: its transcript spoken by espeak-ng in its variant."""
    from synthesis.text import Segment

    speaker = VoiceProfile(
        id="prompt", fingerprint="prompt", espeak_variant=config.get("espeak_variant")
    )
    segment = Segment(text=config["prompt_text"], lang=config.get("lang", "cmn"))
    audio = engine.synthesize(segment, speaker, 0)
    buffer = io.BytesIO()
    sf.write(buffer, audio, engine.sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def publish_demo_profiles(store: Any, engine: Any, include_dir: pathlib.Path) -> list[str]:
    """Render and upload every demo profile under ``voices/``; returns their ids."""
    published = []
    for profile_id, config in demo_profile_configs(include_dir).items():
        for name, body in profile_objects(config, render_demo_prompt(engine, config)).items():
            content_type = "application/json" if name.endswith(".json") else "audio/wav"
            store.write(f"voices/{profile_id}/{name}", body, content_type, {})
        published.append(profile_id)
    return published
