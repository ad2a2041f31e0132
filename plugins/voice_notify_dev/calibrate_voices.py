"""Calibration of the enrollment thresholds on the project's synthetic voices (prints figures).

python -m voice_notify_dev.calibrate_voices
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from voice_notify.voices.checks import (
    SINGLE_SPEAKER_MIN_SIMILARITY,
    _resample,
    cosine,
    embed,
    speaker_consistency,
)
from voice_notify.voices.denylist import _voices_dir, _yaml_entries, load_denylist
from voice_notify.voices.synthetic import SyntheticVoice, render_synthetic, wav_bytes

log = logging.getLogger(__name__)

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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--include-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(calibrate(args.include_dir), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
