"""The CosyVoice3 adapter: local weights only, speaker caching, the right upstream calls."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from synthesis.engines import EngineUnavailable, SegmentRejected, make_engine
from synthesis.engines.cosyvoice3 import REQUIRED_DIRS, REQUIRED_FILES, CosyVoice3Engine
from synthesis.instructs import default_catalogue
from synthesis.text import Segment
from synthesis.voices import VoiceProfile
from tests.support.fake_cosyvoice import make_model_dir


def _profile(tmp_path: Path, espeak, profile_id: str = "agent") -> VoiceProfile:
    from synthesis.voices import render_demo_prompt

    wav = tmp_path / f"{profile_id}.wav"
    wav.write_bytes(render_demo_prompt(espeak, {"prompt_text": "您好，我是客户经理。"}))
    return VoiceProfile(
        id=profile_id,
        fingerprint="f00d",
        consent_id="c-1",
        prompt_text="您好，我是客户经理。",
        prompt_wav=wav,
    )


def test_a_missing_model_directory_is_refused_never_downloaded(tmp_path: Path) -> None:
    engine = CosyVoice3Engine(tmp_path / "nowhere")
    with pytest.raises(EngineUnavailable, match="does not exist"):
        engine.load()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("missing", [*REQUIRED_FILES, *REQUIRED_DIRS])
def test_the_missing_model_file_is_named(tmp_path: Path, missing: str, fake_cosyvoice) -> None:
    model_dir = make_model_dir(tmp_path)
    target = model_dir / missing
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(EngineUnavailable, match=missing.replace(".", r"\.")):
        CosyVoice3Engine(model_dir).load()
    assert fake_cosyvoice.instances == []  # nothing was loaded


def test_without_the_cosyvoice_package_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cosyvoice", None)  # import fails
    with pytest.raises(
        EngineUnavailable, match=r"cannot import cosyvoice.*VOICE_NOTIFY_COSYVOICE_ROOT"
    ):
        CosyVoice3Engine(make_model_dir(tmp_path)).load()


def test_make_engine_needs_a_model_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_NOTIFY_MODEL_DIR", raising=False)
    with pytest.raises(EngineUnavailable, match="model directory"):
        make_engine("cosyvoice3")


def test_nothing_is_loaded_before_load(model_dir: Path, fake_cosyvoice) -> None:
    engine = CosyVoice3Engine(model_dir)
    assert fake_cosyvoice.instances == []
    with pytest.raises(EngineUnavailable, match="load"):
        _ = engine.version


def test_loading_uses_the_local_directory_and_plain_options(cosyvoice, fake_cosyvoice) -> None:
    (model,) = fake_cosyvoice.instances
    assert model.model_dir == str(cosyvoice.model_dir)
    assert model.options == {"load_trt": False, "load_vllm": False, "fp16": False}
    assert cosyvoice.sample_rate == 24000
    assert cosyvoice.version.startswith("cosyvoice3 Fun-CosyVoice3-0.5B-2512 ")


def test_zero_shot_caches_the_speaker_once_and_disables_the_upstream_frontend(
    cosyvoice, fake_cosyvoice, tmp_path: Path, espeak
) -> None:
    voice = _profile(tmp_path, espeak)
    segment = Segment(text="曾先生您好。", lang="cmn", overrides=((0, 1, "zēng"),))
    first = cosyvoice.synthesize(segment, voice, seed=7)
    second = cosyvoice.synthesize(segment, voice, seed=7)
    model = fake_cosyvoice.instances[0]
    registrations = [c for c in model.calls if c["method"] == "add_zero_shot_spk"]
    assert len(registrations) == 1
    spk = registrations[0]["spk"]
    prompt_text, _ = model.speakers[spk]
    assert prompt_text == "You are a helpful assistant.<|endofprompt|>您好，我是客户经理。"
    calls = [c for c in model.calls if c["method"] == "inference_zero_shot"]
    assert [c["spk"] for c in calls] == [spk, spk]
    assert all(c["text_frontend"] is False and c["stream"] is False for c in calls)
    assert all(c["prompt_text"] == "" and c["prompt_wav"] == "" for c in calls)
    assert calls[0]["text"] == "[z][ēng]先生您好。"  # pronunciation inpainting
    assert first.dtype == np.float32 and first.ndim == 1
    np.testing.assert_array_equal(first, second)  # same seed, same audio
    other_seed = cosyvoice.synthesize(segment, voice, seed=8)
    assert not np.array_equal(first, other_seed)


def test_a_dialect_goes_through_instruct2_with_its_own_cached_speaker(
    cosyvoice, fake_cosyvoice, tmp_path: Path, espeak
) -> None:
    voice = _profile(tmp_path, espeak)
    sichuan = default_catalogue().for_notice("sichuan")
    segment = Segment(text="您好。", lang="cmn")
    cosyvoice.synthesize(segment, voice, seed=1)
    cosyvoice.synthesize(segment, voice, seed=1, instruct=sichuan)
    cosyvoice.synthesize(segment, voice, seed=2, instruct=sichuan)
    model = fake_cosyvoice.instances[0]
    instruct_calls = [c for c in model.calls if c["method"] == "inference_instruct2"]
    assert len(instruct_calls) == 2
    assert instruct_calls[0]["instruct_text"] == (
        "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"
    )
    assert instruct_calls[0]["text_frontend"] is False
    registered = [c["spk"] for c in model.calls if c["method"] == "add_zero_shot_spk"]
    assert len(registered) == 2 and registered[0] != registered[1]
    assert model.speakers[instruct_calls[0]["spk"]][0] == sichuan.instruct_text
    assert cosyvoice.speakers == frozenset(registered)


def test_speed_reaches_the_model(cosyvoice, fake_cosyvoice, tmp_path: Path, espeak) -> None:
    voice = _profile(tmp_path, espeak)
    segment = Segment(text="本通话语音由人工智能合成。", lang="cmn")
    normal = cosyvoice.synthesize(segment, voice, seed=1)
    slow = cosyvoice.synthesize(segment, voice, seed=1, speed=0.5)
    assert fake_cosyvoice.instances[0].calls[-1]["speed"] == 0.5
    assert abs(slow.size / normal.size - 2.0) < 0.01


def test_a_token_outside_the_inventory_is_rejected(cosyvoice, tmp_path: Path, espeak) -> None:
    voice = _profile(tmp_path, espeak)
    segment = Segment(text="您好[q][xyz]。", lang="cmn")
    with pytest.raises(SegmentRejected) as caught:
        cosyvoice.synthesize(segment, voice, seed=1)
    assert caught.value.reason_code == "rejected_token"


def test_the_engine_needs_a_prompt(cosyvoice) -> None:
    from synthesis.voices import STANDARD_PROFILE

    with pytest.raises(SegmentRejected, match="voice_profile_missing"):
        cosyvoice.synthesize(Segment(text="您好。", lang="cmn"), STANDARD_PROFILE, seed=1)


def test_the_instruct_catalogue_holds_what_the_model_was_trained_on() -> None:
    catalogue = default_catalogue()
    dialects = catalogue.of_kind("dialect")
    assert len(dialects) == 17
    assert {d.text for d in dialects} >= {
        "请用四川话表达。",
        "请用广东话表达。",
        "请用上海话表达。",
    }
    assert {t.key for t in catalogue.of_kind("tone")} == {
        "loud", "soft", "slow", "fast", "happy", "sad", "angry",
    }  # fmt: skip
    assert len(catalogue.of_kind("style")) == 2
    from synthesis.instructs import UnknownInstruct

    with pytest.raises(UnknownInstruct):
        catalogue.for_notice("peppa_pig")  # trained on, never for a customer call
    with pytest.raises(UnknownInstruct):
        catalogue.for_notice("klingon")
