"""Enrollment on real recordings (espeak-ng), the real speaker encoder, SQLite and S3."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import sqlalchemy as sa

from tests.voices.conftest import ALL_TYPES, DAY
from voice_notify.db import schema
from voice_notify.voices import checks, denylist, store, synthetic
from voice_notify.voices import enrollment as en
from voice_notify.voices import registry as vp
from voice_notify_dev import demo_voices

PROMPT = "您好，我是您的客户经理，很高兴为您服务，有任何问题都可以随时联系我。"
OTHER = "您本月的还款日是十二月五日，应还金额三千二百八十元，请按时还款。"


@pytest.fixture(scope="module")
def agent_voice() -> tuple[np.ndarray, int]:
    return synthetic.render_synthetic(PROMPT, "cmn", synthetic.SyntheticVoice("f3"))


def _spec(profile_id: str = "agent-x", speaker: str = "李娜") -> vp.ProfileSpec:
    return vp.ProfileSpec(profile_id, speaker, "cmn", ("cmn",), ALL_TYPES)


def _consent(profile_id: str = "agent-x") -> vp.ConsentRecord:
    return vp.ConsentRecord(
        f"consent-{profile_id}",
        profile_id,
        "李娜",
        dt.date(2026, 1, 1),
        ALL_TYPES,
        ("cmn",),
        "dms://consents/1",
    )


def _request(emotion="normal", transcript=PROMPT, consent=True, **spec) -> store.EnrollmentRequest:
    profile = _spec(**spec)
    return store.EnrollmentRequest(
        profile, emotion, transcript, _consent(profile.profile_id) if consent else None
    )


def _reason(data: bytes) -> str | None:
    try:
        checks.check_recording(data)
    except checks.RecordingRejected as exc:
        return exc.reason_code
    return None


def test_signal_checks_each_reject_with_their_reason(agent_voice) -> None:
    audio, rate = agent_voice
    rng = np.random.default_rng(3)
    rms = float(np.sqrt(np.mean(audio**2)))
    assert _reason(synthetic.wav_bytes(audio, rate)) is None
    assert _reason(b"RIFF....WAVEfmt not really") == "recording_unreadable"
    assert _reason(synthetic.wav_bytes(audio[: 2 * rate], rate)) == "recording_too_short"
    assert _reason(synthetic.wav_bytes(np.tile(audio, 4), rate)) == "recording_too_long"
    narrow = checks._resample(audio, rate, 8000)
    assert _reason(synthetic.wav_bytes(narrow, 8000)) == "recording_sample_rate_low"
    assert _reason(synthetic.wav_bytes(np.clip(audio * 4, -1, 1), rate)) == "recording_clipped"
    noise = rng.normal(0, 0.03, 6 * rate).astype(np.float32)
    assert _reason(synthetic.wav_bytes(noise, rate)) == "recording_no_speech"
    assert (
        _reason(synthetic.wav_bytes(np.zeros(6 * rate, np.float32), rate)) == "recording_no_speech"
    )
    noisy = audio + rng.normal(0, rms / 10 ** (10 / 20), audio.size).astype(np.float32)
    assert _reason(synthetic.wav_bytes(noisy, rate)) == "recording_too_noisy"
    # A quiet room (noise 30 dB under the speech) is fine.
    room = audio + rng.normal(0, rms / 10 ** (30 / 20), audio.size).astype(np.float32)
    assert _reason(synthetic.wav_bytes(room, rate)) is None


def test_a_second_speaker_is_rejected(agent_voice) -> None:
    audio, rate = agent_voice
    other, _ = synthetic.render_synthetic(OTHER, "cmn", synthetic.SyntheticVoice("m7"))
    same, _ = synthetic.render_synthetic(OTHER, "cmn", synthetic.SyntheticVoice("f3"))
    two = np.concatenate([audio[: audio.size // 2], other[other.size // 2 :]])
    one = np.concatenate([audio[: audio.size // 2], same[same.size // 2 :]])
    with pytest.raises(checks.RecordingRejected) as rejected:
        checks.check_speaker(synthetic.wav_bytes(two, rate))
    assert rejected.value.reason_code == "recording_multiple_speakers"
    embedding, metrics = checks.check_speaker(synthetic.wav_bytes(one, rate))
    assert metrics["halves_similarity"] >= checks.SINGLE_SPEAKER_MIN_SIMILARITY
    assert embedding.shape == (256,)


@pytest.mark.parametrize(
    ("speaker", "profile_id", "transcript"),
    [
        ("深圳市公安局 反诈中心", "agent-x", PROMPT),
        ("李娜", "agent-x", "您好，我是公安局的工作人员，请配合调查。"),
        ("Demo News Anchor A", "agent-x", PROMPT),
        ("李娜", "people-s-bank-of-china", PROMPT),
    ],
)
def test_denylisted_names_are_rejected(speaker, profile_id, transcript) -> None:
    loaded = denylist.load_denylist()
    with pytest.raises(checks.RecordingRejected) as rejected:
        denylist.check_denylist(
            loaded, speaker=speaker, profile_id=profile_id, transcript=transcript, embedding=None
        )
    assert rejected.value.reason_code == "denylist_name"


def test_the_denylist_references_are_reproducible() -> None:
    stored = denylist.load_denylist()
    rebuilt = denylist.build_denylist_embeddings()["embeddings"]
    refs = {e.id: e.reference for e in stored.entries if e.reference}
    assert set(refs) == set(rebuilt) and len(refs) == 3
    for entry_id, vector in rebuilt.items():
        assert checks.cosine(vector, refs[entry_id]) > 0.999


def test_enroll_stores_profile_consent_and_objects(
    sqlite_registry, s3_client, s3_bucket, agent_voice
):
    data = synthetic.wav_bytes(*agent_voice)
    outcome = en.enroll(sqlite_registry, s3_client, s3_bucket, _request(), data, DAY)
    assert outcome.enrolled and outcome.consent_id == "consent-agent-x"
    assert outcome.metrics["denylist_max_similarity"] < checks.DENYLIST_SIMILARITY
    with sqlite_registry.connect() as conn:
        row = vp.profile_row(conn, "agent-x")
        assert vp.consent_for(conn, "agent-x", "policy_renewal", "cmn", DAY).allowed
    assert len(json.loads(row.embedding)) == 256
    assert json.loads(row.variants)["normal"]["prompt_key"] == "voices/agent-x/prompt.wav"
    stored = s3_client.get_object(Bucket=s3_bucket, Key="voices/agent-x/prompt.wav")
    assert stored["Body"].read() == data
    document = json.loads(
        s3_client.get_object(Bucket=s3_bucket, Key="voices/agent-x/profile.json")["Body"].read()
    )
    assert document["consent_id"] == "consent-agent-x"
    assert document["prompt_text"] == PROMPT and document["lang"] == "cmn"

    # A warm variant in another person's voice is refused; the speaker's own is taken.
    stranger, rate = synthetic.render_synthetic(OTHER, "cmn", synthetic.SyntheticVoice("m7"))
    refused = en.enroll(
        sqlite_registry,
        s3_client,
        s3_bucket,
        _request("warm", OTHER, consent=False),
        synthetic.wav_bytes(stranger, rate),
        DAY,
    )
    assert refused.reason_code == "variant_speaker_mismatch"
    warm, rate = synthetic.render_synthetic(OTHER, "cmn", synthetic.SyntheticVoice("f3", 58, 0.92))
    accepted = en.enroll(
        sqlite_registry,
        s3_client,
        s3_bucket,
        _request("warm", OTHER, consent=False),
        synthetic.wav_bytes(warm, rate),
        DAY,
    )
    assert accepted.enrolled
    s3_client.head_object(Bucket=s3_bucket, Key="voices/agent-x/prompt-warm.wav")


def test_enroll_refuses_without_consent_or_normal_variant(
    sqlite_registry, s3_client, s3_bucket, agent_voice
):
    data = synthetic.wav_bytes(*agent_voice)
    no_consent = en.enroll(
        sqlite_registry, s3_client, s3_bucket, _request(consent=False), data, DAY
    )
    assert no_consent.reason_code == "voice_consent_missing"
    early = en.enroll(sqlite_registry, s3_client, s3_bucket, _request("warm"), data, DAY)
    assert early.reason_code == "profile_not_enrolled"
    with sqlite_registry.connect() as conn:
        decisions = conn.execute(
            sa.select(schema.voice_enrollments.c.emotion, schema.voice_enrollments.c.reason_code)
        ).all()
    assert sorted(decisions) == [
        ("normal", "voice_consent_missing"),
        ("warm", "profile_not_enrolled"),
    ]
    listing = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="voices/")
    assert listing.get("KeyCount", 0) == 0


def test_a_denylisted_voice_denies_the_profile(sqlite_registry, s3_client, s3_bucket) -> None:
    # The anchor stand-in (espeak-ng "edward"), on a text and pitch not in its reference.
    audio, rate = synthetic.render_synthetic(
        OTHER, "cmn", synthetic.SyntheticVoice("edward", 56, 0.95)
    )
    outcome = en.enroll(
        sqlite_registry, s3_client, s3_bucket, _request(), synthetic.wav_bytes(audio, rate), DAY
    )
    assert outcome.reason_code == "denylist_voice"
    assert outcome.metrics["denylist_max_similarity"] >= checks.DENYLIST_SIMILARITY
    with sqlite_registry.connect() as conn:
        decision = vp.consent_for(conn, "agent-x", "repayment_reminder", "cmn", DAY)
    assert decision.reason_code == "voice_profile_denied"
    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="voices/").get("KeyCount", 0) == 0


def test_demo_profiles_enroll_idempotently_and_resolve_for_the_worker(
    sqlite_registry, s3_client, s3_bucket, tmp_path
) -> None:
    from synthesis.store import BatchStore
    from synthesis.voices import VoiceLibrary

    ids = demo_voices.enroll_demo_profiles(sqlite_registry, s3_client, s3_bucket, DAY)
    assert ids == ["demo-agent-f", "demo-agent-f2", "demo-agent-m", "demo-agent-m2"]
    library = VoiceLibrary(BatchStore(s3_bucket, s3_client), tmp_path)
    for profile_id in ids:
        voice = library.resolve(profile_id)
        assert voice.consent_id and voice.prompt_rate == 22050
    with sqlite_registry.connect() as conn:
        first = conn.execute(
            sa.select(sa.func.count()).select_from(schema.voice_enrollments)
        ).scalar()
        assert first == 12  # four agents, three emotions each, all enrolled
        assert vp.choose_profile(conn, "pension_arrival", "yue", DAY).profile_id == "demo-agent-f2"
        scope = vp.consent_for(conn, "demo-agent-m2", "pension_arrival", "cmn", DAY)
        assert scope.reason_code == "voice_consent_scope"
    prompt = s3_client.get_object(Bucket=s3_bucket, Key="voices/demo-agent-m/prompt-serious.wav")
    before = prompt["Body"].read()
    # The demo's S3 starts empty each run: a rerun republishes the same bytes, no new rows.
    s3_client.delete_object(Bucket=s3_bucket, Key="voices/demo-agent-m/prompt-serious.wav")
    assert demo_voices.enroll_demo_profiles(sqlite_registry, s3_client, s3_bucket, DAY) == ids
    again = s3_client.get_object(Bucket=s3_bucket, Key="voices/demo-agent-m/prompt-serious.wav")
    assert again["Body"].read() == before
    with sqlite_registry.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.voice_enrollments)).scalar()
            == 12
        )


def test_a_revoked_consent_is_withdrawn_from_the_worker_too(
    sqlite_registry, s3_client, s3_bucket, agent_voice, tmp_path
) -> None:
    from synthesis.store import BatchStore
    from synthesis.voices import VoiceLibrary, VoiceProfileError

    data = synthetic.wav_bytes(*agent_voice)
    assert en.enroll(sqlite_registry, s3_client, s3_bucket, _request(), data, DAY).enrolled
    batch_store = BatchStore(s3_bucket, s3_client)
    assert (
        VoiceLibrary(batch_store, tmp_path / "1").resolve("agent-x").consent_id == "consent-agent-x"
    )
    with sqlite_registry.begin() as conn:
        assert vp.revoke_consent(conn, "consent-agent-x", dt.datetime(2026, 11, 26, 10), "left")
        assert not store.republish_profile(conn, s3_client, s3_bucket, "agent-x")
    with pytest.raises(VoiceProfileError) as refused:
        VoiceLibrary(batch_store, tmp_path / "2").resolve("agent-x")
    assert refused.value.reason_code == "voice_profile_no_consent"
