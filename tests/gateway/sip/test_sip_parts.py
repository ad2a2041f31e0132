"""The SIP call service's pure parts: outcome mapping, settings, audio comparison, masking,
request signing."""

from __future__ import annotations

import numpy as np
import pytest

from voice_notify.gateway.base import CallState
from voice_notify.gateway.sip.audio import compare_audio
from voice_notify.gateway.sip.baresip import mask_numbers
from voice_notify.gateway.sip.call import CallTimers, TrunkSettings, sip_outcome
from voice_notify_dev.sip_callee import behaviour_for_number


@pytest.mark.parametrize(
    ("reason", "state", "error"),
    [
        ("486 Busy Here", CallState.BUSY, None),
        ("486 Rejected", CallState.BUSY, None),
        ("600 Busy Everywhere", CallState.BUSY, None),
        ("480 Temporarily Unavailable", CallState.NO_ANSWER, None),
        ("408 Request Timeout", CallState.NO_ANSWER, None),
        ("404 Not Found", CallState.FAILED, "sip_404"),
        ("488 Not Acceptable Here", CallState.FAILED, "sip_488"),
        ("603 Decline", CallState.DECLINED, None),
        ("607 Unwanted", CallState.DECLINED, None),
        ("503 Service Unavailable", CallState.FAILED, "sip_503"),
        ("Connection refused", CallState.FAILED, "unreachable"),
    ],
)
def test_final_responses_map_to_call_states(reason, state, error):
    assert sip_outcome(reason) == (state, error)


def test_trunk_settings_and_timers(tmp_path):
    trunk = TrunkSettings(
        trunk_host="sbc.example",
        trunk_port=5080,
        transport="tcp",
        caller_id="+8610955555",
        codecs=("pcma", "pcmu"),
        auth_user="trunk-user",
        auth_pass="s3cret",
    )
    assert trunk.codecs == ("PCMA", "PCMU")
    assert trunk.target_uri("+8613812345678") == (
        "sip:+8613812345678@sbc.example:5080;transport=tcp"
    )
    account = trunk.account_line(("PCMU", "PCMA"))
    assert account.startswith("<sip:+8610955555@sbc.example>;regint=0")
    assert account.endswith("audio_codecs=PCMU,PCMA;auth_user=trunk-user;auth_pass=s3cret")
    assert "s3cret" not in repr(trunk)
    with pytest.raises(ValueError, match="transport"):
        TrunkSettings(trunk_host="x", transport="tls")
    with pytest.raises(ValueError, match="codecs"):
        TrunkSettings(trunk_host="x", codecs=("G729",))
    with pytest.raises(ValueError, match="post_dial_timeout_s"):
        CallTimers(post_dial_timeout_s=0)
    # The silent source outlasts every wait before an answer.
    timers = CallTimers(setup_timeout_s=5, post_dial_timeout_s=30, ring_timeout_s=60)
    assert timers.before_answer_s > 95


def test_signed_requests_cover_method_path_and_body():
    from voice_notify.gateway.callbacks import (
        InvalidSignature,
        sign_http_request,
        verify_http_request,
    )

    headers = sign_http_request("k", "POST", "/v1/calls", b'{"a": 1}')
    verify_http_request("k", headers, "POST", "/v1/calls", b'{"a": 1}')
    for method, path, body in (
        ("GET", "/v1/calls", b'{"a": 1}'),
        ("POST", "/v1/calls?x=1", b'{"a": 1}'),
        ("POST", "/v1/calls", b'{"a": 2}'),
    ):
        with pytest.raises(InvalidSignature):
            verify_http_request("k", headers, method, path, body)
    with pytest.raises(InvalidSignature):
        verify_http_request("other", headers, "POST", "/v1/calls", b'{"a": 1}')


def test_compare_audio_aligns_and_reads_libre_zero_codes_as_zero():
    rng = np.random.default_rng(7)
    sent = (rng.standard_normal(8000) * 3000).astype(np.int16)
    sent[np.abs(sent) < 8] = 0  # as decoded G.711: nothing between 0 and ±8
    sent[::50] = 0
    recorded = np.concatenate([np.zeros(1234, np.int16), sent, np.zeros(800, np.int16)])
    recorded[recorded == 0] = 2  # what baresip's decoder makes of μ-law 0xFF
    match = compare_audio(sent, recorded)
    assert match.matches and match.lag_s == 1234 / 8000 and match.ncc == 1.0
    damaged = recorded.copy()
    damaged[1234 + 4000] += 8
    assert compare_audio(sent, damaged).equal_frames == match.active_frames - 1
    assert not compare_audio(sent, damaged).matches


def test_numbers_pick_behaviours_by_last_digit():
    assert behaviour_for_number("+8613812345670").name == "busy"
    assert behaviour_for_number("+8613812345679").key == "9"
    assert behaviour_for_number("+8613812345674").rings is None


def test_baresip_console_lines_are_masked():
    line = "INVITE sip:+8613812345678@127.0.0.1:5170 SIP/2.0 Call-ID: 85818522bf68c088"
    assert mask_numbers(line) == (
        "INVITE sip:+86*******5678@127.0.0.1:5170 SIP/2.0 Call-ID: 85818522bf68c088"
    )
