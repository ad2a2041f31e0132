"""The worker's per-item policy against a real S3 endpoint: labels, the quality gate with
retry and fallback, the segment cache, voice profiles and bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthesis import labels, worker
from synthesis.manifest import BatchItem, VoiceSpec, item_seed, parse_results
from synthesis.text import NoticeComposer

INCLUDE = Path(__file__).resolve().parents[2] / "include"
BATCH_KEY = "campaigns/2026-11-26/all/batches/batch-0000.jsonl"
CONTEXT = {
    "organization": "示例银行",
    "service_phone": "95555",
    "confirm_key": "1",
    "optout_key": "9",
}


def _item(notice_id: int, name: str = "单丽", locale: str = "cmn", **voice) -> BatchItem:
    composer = NoticeComposer.load(INCLUDE)
    composed = composer.compose(
        "pension_arrival",
        locale,
        {"amount": "1200.00", "arrival_date": "2026-11-26"},
        {**CONTEXT, "customer_name": name},
    )
    return BatchItem(
        ledger_id=1000 + notice_id,
        notice_id=notice_id,
        campaign_date="2026-11-26",
        notice_type="pension_arrival",
        locale=locale,
        segments=[s.to_dict() for s in composed.segments],
        voice=VoiceSpec(**voice),
        seed=item_seed(notice_id, "2026-11-26"),
    )


def _read(store, key: str) -> bytes:
    return store.read(key)


def test_a_notice_carries_both_labels_and_its_qc_metrics(synthesizer_factory, store) -> None:
    synthesizer = synthesizer_factory()
    item = _item(1)
    synthesizer.plan([item])
    result = synthesizer.process(item)
    synthesizer.drain()
    assert result.status == "ok", result
    assert result.labels["source"] == "template"  # the template's first sentence, not a copy
    assert len(result.segment_seeds) == len(item.segments)
    assert labels.in_rate_window(result.labels["rate_per_min"])
    assert result.qc["loudness_lufs"] == pytest.approx(-20, abs=1.5)
    assert result.qc["leading_silence_s"] <= 0.5 and result.qc["similarity"] is None
    telephone = _read(store, result.audio_key)
    aigc = labels.read_implicit_label(telephone)
    assert aigc["ProduceID"] == str(item.ledger_id) and aigc["Label"] == "1"
    assert aigc["PropagateID"] == "vn-1-2026-11-26"
    assert sf.info(io.BytesIO(telephone)).subtype == "ULAW"
    master = _read(store, result.master_key)
    info = sf.info(io.BytesIO(master))
    assert (info.samplerate, info.subtype) == (24000, "PCM_16")
    assert labels.read_implicit_label(master) == aigc


def test_a_notice_without_the_disclosure_gets_it_spoken_first(synthesizer_factory) -> None:
    synthesizer = synthesizer_factory()
    item = _item(2)
    without = BatchItem(**{**item.__dict__, "segments": item.segments[1:]})
    synthesizer.plan([without])
    result = synthesizer.process(without)
    assert result.status == "ok"
    assert result.labels["source"] == "added"
    assert result.labels["text"] == labels.SPOKEN_LABELS["cmn"]
    assert len(result.segment_seeds) == len(without.segments) + 1


def test_shared_sentences_come_from_the_segment_cache(synthesizer_factory, store) -> None:
    first, second = _item(3, "单丽"), _item(4, "曾小明")
    synthesizer = synthesizer_factory()
    synthesizer.plan([first, second])
    a, b = synthesizer.process(first), synthesizer.process(second)
    synthesizer.drain()
    assert a.status == b.status == "ok"
    assert a.cached_audio_s == 0.0
    # Label, closing and service sentences are shared; the greeting with a name is not.
    assert 0.3 < b.cached_audio_s / b.speech_audio_s < 0.95
    shared_seeds = set(a.segment_seeds) & set(b.segment_seeds)
    assert len(shared_seeds) >= 3
    # A later worker finds the shared sentences in S3.
    later = synthesizer_factory()
    third = _item(5, "欧阳娜")
    later.plan([third, _item(6, "李雷")])
    assert later.process(third).cached_audio_s > 0
    assert later.cache.stats.store_hits > 0


def test_a_corrupt_cached_segment_is_rendered_again(synthesizer_factory, store) -> None:
    synthesizer = synthesizer_factory()
    items = [_item(7, "单丽"), _item(8, "曾小明")]
    synthesizer.plan(items)
    synthesizer.process(items[0])
    synthesizer.drain()
    keys = [k for k in _keys(store, "segments/")]
    assert keys
    for key in keys:
        store.write(key, b"RIFF\x00\x00garbage", "audio/wav", {"samples": "1"})
    fresh = synthesizer_factory()  # nothing in memory: it must read S3
    fresh.plan(items)
    result = fresh.process(items[1])
    assert result.status == "ok"
    assert result.warnings == ["segment_cache_corrupt"]
    assert fresh.cache.stats.corrupt > 0


def test_corrupt_stored_audio_is_not_resumed(synthesizer_factory, store) -> None:
    item = _item(9)
    synthesizer = synthesizer_factory()
    synthesizer.plan([item])
    first = synthesizer.process(item)
    synthesizer.drain()
    store.write(first.audio_key, b"RIFF-truncated", "audio/wav", {"bytes": "999999"})
    again = synthesizer_factory()
    again.plan([item])
    result = again.process(item)
    again.drain()
    assert result.status == "ok" and not result.resumed
    assert result.warnings == ["audio_cache_corrupt"]
    assert sf.info(io.BytesIO(store.read(result.audio_key))).frames > 8000


def _keys(store, prefix: str) -> list[str]:
    import boto3

    listed = boto3.client("s3").list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    return [entry["Key"] for entry in listed.get("Contents", [])]


class _Garbling:
    """A primary engine that always renders too fast (a model skipping text)."""

    name = "garbling"
    needs_prompt = False
    version = "garbling 1"
    sample_rate = 22050

    def __init__(self, inner, crash: bool = False) -> None:
        self.inner = inner
        self.crash = crash
        self.seeds: list[int] = []

    def load(self) -> None: ...

    def synthesize(self, segment, voice, seed, *, instruct=None, speed=1.0):
        self.seeds.append(seed)
        if self.crash:
            raise RuntimeError("CUDA error: device-side assert triggered")
        audio = self.inner.synthesize(segment, voice, seed, instruct=instruct, speed=speed)
        return audio[::8] if not segment.text.startswith("本通话") else audio


def test_a_failing_gate_is_retried_with_another_seed_then_the_fallback_speaks(
    synthesizer_factory, espeak
) -> None:
    garbling = _Garbling(espeak)
    synthesizer = synthesizer_factory(engine=garbling, fallback=espeak)
    item = _item(10)
    synthesizer.plan([item])
    result = synthesizer.process(item)
    assert result.status == "ok"
    assert result.fallback is True and result.attempts == 3
    assert result.engine == espeak.version
    body_seeds = garbling.seeds[-(len(item.segments) - 1) * 2 :]
    first, second = body_seeds[: len(body_seeds) // 2], body_seeds[len(body_seeds) // 2 :]
    assert set(first).isdisjoint(second)  # the retry used other seeds


def test_without_a_fallback_the_gate_failure_is_the_reason(synthesizer_factory, espeak) -> None:
    synthesizer = synthesizer_factory(engine=_Garbling(espeak))
    item = _item(11)
    synthesizer.plan([item])
    result = synthesizer.process(item)
    assert (result.status, result.error_code) == ("failed", "qc_duration")
    assert result.qc["chars_per_s"] > 9


def test_an_engine_crash_falls_back_or_fails_alone(synthesizer_factory, espeak) -> None:
    item = _item(12)
    crashing = _Garbling(espeak, crash=True)
    with_fallback = synthesizer_factory(engine=crashing, fallback=espeak)
    with_fallback.plan([item])
    saved = with_fallback.process(item)
    assert saved.status == "ok" and saved.fallback
    alone = synthesizer_factory(engine=_Garbling(espeak, crash=True))
    alone.plan([item])
    failed = alone.process(item)
    assert (failed.status, failed.error_code) == ("failed", "engine_crash")
    assert "CUDA error" in failed.detail


@pytest.mark.parametrize(
    ("voice", "reason"),
    [
        ({"profile": "nobody-here"}, "voice_profile_missing"),
        ({"profile": "../etc"}, "voice_profile_invalid"),
        ({"profile": "broken"}, "voice_profile_unreadable"),
        ({"profile": "no-consent"}, "voice_profile_no_consent"),
        ({"instruct": "klingon"}, "unknown_instruct"),
    ],
)
def test_bad_voices_fail_the_item_with_a_reason(
    synthesizer_factory, store, demo_profiles, voice: dict, reason: str
) -> None:
    store.write("voices/broken/profile.json", b"{not json", "application/json", {})
    store.write("voices/broken/prompt.wav", b"RIFF", "audio/wav", {})
    good_wav = store.read(f"voices/{demo_profiles[0]}/prompt.wav")
    store.write("voices/no-consent/profile.json", b'{"prompt_text": "x"}', "text/json", {})
    store.write("voices/no-consent/prompt.wav", good_wav, "audio/wav", {})
    synthesizer = synthesizer_factory()
    item = _item(13, **voice)
    synthesizer.plan([item])
    result = synthesizer.process(item)
    assert (result.status, result.error_code) == ("failed", reason)


class CountingEncoder:
    """Stands in for the speaker encoder: counts loads and calls, embeds like the real one."""

    def __init__(self, real=None) -> None:
        self.real = real
        self.calls: list[tuple[str, int]] = []

    def embed(self, audio, rate):
        self.calls.append(("embed", 1))
        return self.real.embed(audio, rate)

    def embed_many(self, clips):
        self.calls.append(("embed_many", len(clips)))
        return self.real.embed_many(clips)


def _impostor(store) -> None:
    """A profile with demo-agent-f's settings and demo-agent-m's recording."""
    config = json.loads(store.read("voices/demo-agent-f/profile.json"))
    store.write("voices/impostor/profile.json", json.dumps(config).encode(), "application/json", {})
    other = store.read("voices/demo-agent-m/prompt.wav")
    store.write("voices/impostor/prompt.wav", other, "audio/wav", {})


@pytest.fixture
def clone_drifts(fake_cosyvoice, store, demo_profiles, tmp_path, monkeypatch):
    """The stand-in model clones ``impostor`` into demo-agent-f's voice: a clone that does
    not sound like the recording it was given."""
    _impostor(store)
    elsewhere = tmp_path / "demo-agent-f.wav"
    elsewhere.write_bytes(store.read("voices/demo-agent-f/prompt.wav"))
    add = fake_cosyvoice.add_zero_shot_spk

    def add_drifting(self, prompt_text, prompt_wav, zero_shot_spk_id):
        if zero_shot_spk_id.startswith("impostor-"):
            prompt_wav = str(elsewhere)
        return add(self, prompt_text, prompt_wav, zero_shot_spk_id)

    monkeypatch.setattr(fake_cosyvoice, "add_zero_shot_spk", add_drifting)


def test_espeak_voices_never_load_the_speaker_encoder(
    synthesizer_factory, store, demo_profiles
) -> None:
    """The standard voice and the espeak-ng variants of the demo profiles clone nobody."""
    encoder = CountingEncoder()  # no real encoder behind it: any call would fail
    items = [_item(30), _item(31, "曾小明", profile="demo-agent-f"), _item(32, locale="yue")]
    synthesizer = synthesizer_factory()
    synthesizer.speaker_encoder = encoder
    synthesizer.plan(items)
    results = [synthesizer.process(item) for item in items]
    synthesizer.drain()
    assert [r.status for r in results] == ["ok", "ok", "ok"], results
    assert all(r.qc["similarity"] is None for r in results)
    assert encoder.calls == []


def test_a_cloned_voice_is_checked_for_similarity(
    synthesizer_factory, cosyvoice, demo_profiles, speaker_encoder, clone_drifts
) -> None:
    encoder = CountingEncoder(speaker_encoder)
    synthesizer = synthesizer_factory(engine=cosyvoice)
    synthesizer.speaker_encoder = encoder
    items = [_item(14, profile="demo-agent-f"), _item(19, "曾小明", profile="demo-agent-f")]
    items.append(_item(15, profile="impostor"))
    synthesizer.plan(items)
    # Both voices' recordings embedded once for the batch, in one call.
    assert encoder.calls == [("embed_many", 2)]
    good, other, refused = (synthesizer.process(item) for item in items)
    synthesizer.drain()
    assert (good.status, other.status) == ("ok", "ok"), (good, other)
    assert good.qc["similarity"] >= 0.91 and other.qc["similarity"] >= 0.91
    # The clone came out in another speaker's voice: the gate refuses it.
    assert (refused.status, refused.error_code) == ("failed", "qc_similarity")
    assert refused.qc["similarity"] < 0.91
    assert ("embed_many", 2) not in encoder.calls[1:]  # references were not embedded again
    assert all(kind == "embed" for kind, _ in encoder.calls[1:])  # one per rendering


def test_a_clone_refused_by_the_gate_falls_back_to_the_standard_voice(
    synthesizer_factory, cosyvoice, store, demo_profiles, clone_drifts
) -> None:
    from synthesis.engines.espeak import EspeakEngine

    fallback = EspeakEngine()  # the standard voice
    fallback.load()
    synthesizer = synthesizer_factory(engine=cosyvoice, fallback=fallback)
    impostor, standard = _item(18, profile="impostor"), _item(18)
    synthesizer.plan([impostor])
    result = synthesizer.process(impostor)
    assert (result.status, result.fallback, result.attempts) == ("ok", True, 3)
    assert result.qc["similarity"] is None  # the standard voice is nobody's clone
    plain = synthesizer_factory()
    plain.plan([standard])
    reference = plain.process(standard)
    synthesizer.drain()
    plain.drain()
    heard = sf.read(io.BytesIO(store.read(result.audio_key)))[0]
    assert np.array_equal(heard, sf.read(io.BytesIO(store.read(reference.audio_key)))[0])


def test_cosyvoice3_speaks_a_profile_in_a_dialect_through_the_worker(
    synthesizer_factory, cosyvoice, fake_cosyvoice, demo_profiles, store
) -> None:
    synthesizer = synthesizer_factory(engine=cosyvoice, similarity_threshold=0.5)
    items = [_item(16, profile="demo-agent-m", instruct="sichuan"), _item(17, "曾小明")]
    synthesizer.plan(items)
    dialect, house = synthesizer.process(items[0]), synthesizer.process(items[1])
    synthesizer.drain()
    assert dialect.status == "ok", dialect
    assert house.status == "failed" and house.error_code == "voice_profile_missing"  # no house
    model = fake_cosyvoice.instances[0]
    methods = {c["method"] for c in model.calls}
    assert {"add_zero_shot_spk", "inference_instruct2"} <= methods
    assert all(c.get("text_frontend") is False for c in model.calls if "text" in c)
    assert dialect.qc["similarity"] is not None
    assert labels.in_rate_window(dialect.labels["rate_per_min"])
    assert dialect.labels["speed"] != 1.0  # calibrated into the window
    audio, rate = sf.read(io.BytesIO(store.read(dialect.audio_key)))
    assert rate == 8000 and np.sqrt(np.mean(audio**2)) > 0.01


def test_sigterm_finishes_the_item_in_hand_and_flushes(s3_bucket: str, monkeypatch) -> None:
    import boto3

    items = [_item(20), _item(21, "曾小明"), _item(22, "欧阳娜")]
    body = "".join(i.to_json() + "\n" for i in items).encode()
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key=BATCH_KEY, Body=body)
    stop = worker.StopFlag()
    real_process = worker.BatchSynthesizer.process

    def process_then_signal(self, item):
        result = real_process(self, item)
        stop.requested = True  # SIGTERM arrives while the first item renders
        return result

    monkeypatch.setattr(worker.BatchSynthesizer, "process", process_then_signal)
    args = worker.build_parser().parse_args(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"])
    assert worker.run_batch(args, stop) == worker.EXIT_TRANSIENT
    results_key = BATCH_KEY.replace("/batches/", "/results/")
    partial = parse_results(
        client.get_object(Bucket=s3_bucket, Key=results_key + ".partial")["Body"].read()
    )
    assert list(partial) == [items[0].ledger_id]
    finished = partial[items[0].ledger_id]
    assert client.head_object(Bucket=s3_bucket, Key=finished.audio_key)  # flushed
    monkeypatch.setattr(worker.BatchSynthesizer, "process", real_process)
    assert worker.run_batch(args, worker.StopFlag()) == worker.EXIT_OK
    final = parse_results(client.get_object(Bucket=s3_bucket, Key=results_key)["Body"].read())
    assert final[items[0].ledger_id].resumed and not final[items[1].ledger_id].resumed
