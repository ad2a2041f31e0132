"""Audio pipeline, AI labels and the quality gate, on synthetic signals and espeak-ng."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as F

from synthesis import audio, labels, qc
from synthesis.text import Segment


def _tone(rate: int, seconds: float, hz: float = 440.0, level: float = 0.1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


@pytest.mark.parametrize("rate", [8000, 22050, 24000])
def test_loudness_is_the_bs1770_measure_of_torchaudio(rate: int) -> None:
    rng = np.random.default_rng(rate)
    signal = (rng.standard_normal(rate * 3) * 0.05).astype(np.float32)
    signal[: rate // 2] = 0.0  # gated silence
    ours = audio.loudness_lufs(signal, rate)
    reference = float(F.loudness(torch.from_numpy(signal)[None], rate))
    assert ours == pytest.approx(reference, abs=0.02)
    assert audio.loudness_lufs(signal[: rate // 5], rate) is None  # shorter than a block


def test_a_segment_is_trimmed_leveled_and_made_telephone_ready(espeak) -> None:
    raw = espeak.synthesize(Segment(text="您好，这里是示例银行。", lang="cmn"), _standard(), 0)
    padded = np.concatenate([np.zeros(11025, np.float32), raw, np.zeros(22050, np.float32)])
    prepared = audio.prepare_segment(padded, espeak.sample_rate)
    assert prepared.audio.size < padded.size * audio.MASTER_RATE / espeak.sample_rate - 30000
    assert audio.loudness_lufs(prepared.audio, audio.MASTER_RATE) == pytest.approx(-20, abs=0.6)
    assert np.max(np.abs(prepared.audio)) <= 10 ** (-1 / 20) + 1e-6
    assert prepared.audio[0] == 0.0 and prepared.audio[-1] == 0.0  # faded
    narrow = prepared.telephone
    assert narrow.size == pytest.approx(prepared.audio.size / 3 + 160, abs=2)
    assert audio.loudness_lufs(narrow, audio.TELEPHONE_RATE) == pytest.approx(-20, abs=0.6)


def _standard():
    from synthesis.voices import STANDARD_PROFILE

    return STANDARD_PROFILE


def test_the_band_limit_keeps_the_telephone_band() -> None:
    rate = audio.TELEPHONE_RATE
    for hz, kept in ((100.0, False), (1000.0, True), (3800.0, False)):
        tone = _tone(rate, 1.0, hz)
        out = audio.band_limit(tone, rate, (300.0, 3400.0))[rate // 4 :]
        gain_db = audio.rms_dbfs(out) - audio.rms_dbfs(tone[rate // 4 :])
        assert (gain_db > -1.0) if kept else (gain_db < -8.0), (hz, gain_db)


def test_the_limiter_holds_its_ceiling_and_leaves_quiet_audio_alone() -> None:
    rate = audio.MASTER_RATE
    loud = _tone(rate, 1.0, level=1.6)
    limited = audio.limit_peaks(loud, rate, -1.0)
    assert np.max(np.abs(limited)) <= 10 ** (-1 / 20) + 1e-6
    assert np.max(np.abs(np.diff(limited))) < 0.2  # no clicks
    quiet = _tone(rate, 1.0, level=0.2)
    np.testing.assert_array_equal(audio.limit_peaks(quiet, rate, -1.0), quiet)


def test_assembly_puts_lead_pauses_and_tail_in_place() -> None:
    rate = audio.TELEPHONE_RATE
    a, b = np.ones(800, np.float32), np.ones(400, np.float32)
    out = audio.assemble([(a, 400), (b, 400)], rate)
    lead = rate * audio.DEFAULT_SETTINGS.lead_ms // 1000
    tail = rate * audio.DEFAULT_SETTINGS.tail_ms // 1000
    assert out.size == lead + 800 + 3200 + 400 + tail
    assert out[:lead].max() == 0 and out[lead : lead + 800].min() == 1


@pytest.mark.parametrize("law", ["ULAW", "ALAW"])
def test_g711_files_carry_the_implicit_label(law: str) -> None:
    label = labels.ImplicitLabel(
        content_producer="示例银行",
        produce_id="4711",
        content_propagator="voice-notify",
        propagate_id="vn-42-2026-11-26",
        reserved_code1="ab" * 32,
    )
    data = audio.encode_telephone(_tone(8000, 1.0), law, label.to_comment())
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.subtype, info.channels) == (8000, law, 1)
    read = labels.read_implicit_label(data)
    assert read == label.as_dict()["AIGC"]
    assert set(read) == {
        "Label", "ContentProducer", "ProduceID", "ReservedCode1",
        "ContentPropagator", "PropagateID", "ReservedCode2",
    }  # fmt: skip
    assert read["ContentProducer"] == "示例银行" and read["ProduceID"] == "4711"
    with sf.SoundFile(io.BytesIO(data)) as wav:  # what the gateway's decoder sees
        assert '"AIGC"' in wav.comment
        assert wav.frames == 8000


def test_the_alaw_encoding_is_not_mulaw() -> None:
    tone = _tone(8000, 0.5)
    assert audio.encode_telephone(tone, "ULAW") != audio.encode_telephone(tone, "ALAW")
    with pytest.raises(ValueError, match="ULAW or ALAW"):
        audio.encode_telephone(tone, "PCM_16")


def test_the_spoken_label_is_recognised_and_its_rate_counted() -> None:
    assert labels.is_spoken_label(Segment(text="本通话语音由人工智能合成。", lang="cmn"))
    assert not labels.is_spoken_label(Segment(text="您好。", lang="cmn"))
    assert labels.rate_units("本通话语音由人工智能合成。", "cmn") == 12
    assert labels.rate_units(labels.SPOKEN_LABELS["en"], "en") == 9
    assert labels.speaking_rate("本通话语音由人工智能合成。", "cmn", 5.0) == pytest.approx(144)
    assert labels.in_rate_window(144) and not labels.in_rate_window(215)


def _check(**overrides):
    telephone = np.concatenate(
        [np.zeros(1200, np.float32), _tone(8000, 3.0), np.zeros(2000, np.float32)]
    )
    telephone = audio.normalize_loudness(telephone, 8000)
    arguments = {
        "texts": [("您好，这里是示例银行。", "cmn")],
        "speech_s": 2.5,
        "clipped_fraction": 0.0,
        "telephone": telephone,
        "similarity": None,
        "thresholds": qc.QcThresholds(),
    }
    return qc.check_notice(**{**arguments, **overrides})


def test_a_good_notice_passes_the_gate() -> None:
    report = _check()
    assert report.passed, report.failures
    assert report.metrics["leading_silence_s"] == pytest.approx(0.15, abs=0.011)
    assert report.metrics["chars_per_s"] == pytest.approx(3.6)


@pytest.mark.parametrize(
    ("overrides", "failure"),
    [
        ({"speech_s": 0.5}, "duration"),  # 18 characters per second: skipped text
        ({"speech_s": 20.0}, "duration"),  # a loop
        ({"clipped_fraction": 0.02}, "clipping"),
        ({"similarity": 0.5}, "similarity"),
        ({"telephone": np.concatenate([np.zeros(8000), _tone(8000, 3.0, level=0.3)])}, None),
        ({"telephone": _tone(8000, 3.0, level=0.002)}, "loudness"),
    ],
)
def test_each_check_can_fail(overrides: dict, failure: str | None) -> None:
    report = _check(**overrides)
    if failure is None:  # a second of dead air first
        assert "leading_silence" in report.failures
    else:
        assert failure in report.failures
        assert report.reason_code is not None
