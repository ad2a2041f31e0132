"""Real SIP calls over loopback through the SIP call service: what the callee hears, and
how each call ends."""

from __future__ import annotations

import socket
import time

import pytest
import sqlalchemy as sa

from tests.gateway.sip.conftest import CONTEXT, NUMBERS, RING_S, needs_baresip
from tests.gateway.sip.notice_audio import AI_LABEL, render_notice
from tests.synthesis.text.samples import ALL_NOTICES
from voice_notify.db import schema
from voice_notify.gateway.base import CallRequest, CallState, GatewayPermanentError
from voice_notify.gateway.sip.audio import compare_audio, read_pcm
from voice_notify.settle import outcomes as reconcile
from voice_notify_dev.sip_callee import compare_answered_calls

pytestmark = [pytest.mark.integration, needs_baresip]


def _sip_call_ids(engine: sa.Engine) -> dict[str, str]:
    """Our call id -> the SIP Call-ID the carrier (the callee) saw."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.sip_calls.c.call_id, schema.sip_calls.c.sip_call_id))
        return dict(rows.all())


def test_the_callee_hears_the_notice_bit_for_bit_ai_label_first(
    callee, make_service, audio_server, composer
):
    # Three notices cut to their first three segments, and one whole notice, at once.
    notices = {
        NUMBERS[3]: render_notice(
            composer, "repayment_reminder", ALL_NOTICES["repayment_reminder"], CONTEXT, segments=3
        ),
        NUMBERS[5]: render_notice(
            composer,
            "appointment_confirmation",
            ALL_NOTICES["appointment_confirmation"],
            CONTEXT,
            segments=3,
        ),
        NUMBERS[7]: render_notice(
            composer, "policy_renewal", ALL_NOTICES["policy_renewal"], CONTEXT, segments=3
        ),
        NUMBERS[13]: render_notice(
            composer, "pension_arrival", ALL_NOTICES["pension_arrival"], CONTEXT
        ),
    }
    running = make_service(callee.host, callee.port)
    gateway = running.gateway
    placed = {}
    for index, (number, notice) in enumerate(notices.items()):
        assert notice.first_text == AI_LABEL
        request = CallRequest(
            to=number,
            idempotency_key=f"vn-{index}-2026-11-26-1",
            audio_url=audio_server.publish(notice.wav),
            ring_timeout_s=10,
        )
        placed[number] = gateway.place_call(request).call_id
    statuses = running.wait_terminal(placed.values())
    assert {s.state for s in statuses.values()} == {CallState.COMPLETED}
    callee.wait_for_calls(len(notices), timeout_s=10)

    sip_ids = _sip_call_ids(running.engine)
    placed = {number: sip_ids[call_id] for number, call_id in placed.items()}
    sent = {placed[n]: notice.wav for n, notice in notices.items()}
    matches = {m.call_id: m for m in compare_answered_calls(callee.state_dir, sent)}
    assert set(matches) == set(sent)
    for number, notice in notices.items():
        match = matches[placed[number]]
        assert match.matches, match.as_dict()
        assert match.match.ncc >= 0.99
        assert match.match.equal_frames == match.match.active_frames > 0
        # The first seconds the callee heard are the AI label, rendered on its own.
        recording = read_pcm(callee.recording(placed[number]))
        label = compare_audio(read_pcm(notice.label_wav), recording)
        assert label.matches, label.as_dict()
        assert label.lag_s == match.match.lag_s  # at the very start of the notice
        assert label.sent_s >= 1.5


def test_busy_no_answer_rejections_and_keys_map_to_outcomes(
    callee, make_service, audio_server, tone_wav
):
    running = make_service(callee.host, callee.port)
    gateway = running.gateway
    url = audio_server.publish(tone_wav)
    cases = {
        NUMBERS[0]: (CallState.BUSY, None, None, "busy"),
        NUMBERS[4]: (CallState.NO_ANSWER, None, None, "no_answer"),
        NUMBERS[6]: (CallState.FAILED, "sip_488", None, "call_failed"),
        "+8613999999999": (CallState.FAILED, "sip_404", None, "call_failed"),  # not served
        NUMBERS[1]: (CallState.COMPLETED, None, "1", "confirmed"),
        NUMBERS[9]: (CallState.COMPLETED, None, "9", "opted_out"),
        NUMBERS[15]: (CallState.COMPLETED, None, None, "completed"),
    }
    placed = {}
    for index, number in enumerate(cases):
        request = CallRequest(to=number, idempotency_key=f"k-{index}", audio_url=url)
        placed[number] = gateway.place_call(request).call_id
    statuses = running.wait_terminal(placed.values())
    for number, (state, error, key, outcome) in cases.items():
        status = statuses[placed[number]]
        assert (status.state, status.error, status.key_pressed) == (state, error, key), number
        assert reconcile.outcome_of(status, "1", "9") == outcome
    # The call book holds the SIP Call-ID the callee saw.
    callee.wait_for_calls(len(cases) - 1, timeout_s=10)  # the 404 never reached a UA
    seen = {c.call_id for c in callee.calls() if c.call_id}
    sip_ids = _sip_call_ids(running.engine)
    assert {sip_ids[placed[n]] for n in (NUMBERS[0], NUMBERS[1], NUMBERS[9], NUMBERS[15])} <= seen
    assert statuses[placed[NUMBERS[0]]].duration_s == 0.0


def test_an_unreachable_trunk_fails_on_the_setup_timer(make_service, audio_server, tone_wav):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # bound, never read: INVITEs vanish
        running = make_service("127.0.0.1", dead_port)
        started = time.monotonic()
        request = CallRequest(
            to=NUMBERS[3], idempotency_key="k-dead", audio_url=audio_server.publish(tone_wav)
        )
        call_id = running.gateway.place_call(request).call_id
        status = running.wait_terminal([call_id], timeout_s=10)[call_id]
    assert (status.state, status.error) == (CallState.FAILED, "unreachable")
    assert time.monotonic() - started < 5  # baresip alone would take 32 s
    assert reconcile.outcome_of(status, "1", "9") == "call_failed"


def test_a_key_pressed_after_the_notice_still_counts(callee, make_service, audio_server, tone_wav):
    from voice_notify_dev.sip_callee import CalleeBehaviour

    late = "+8613900000021"
    callee.add_numbers(
        [late], {late: CalleeBehaviour("late_key", "opted_out", rings=0, key="9", key_after_s=4.5)}
    )
    running = make_service(callee.host, callee.port, dtmf_grace_s=2.0)
    request = CallRequest(
        to=late, idempotency_key="k-late", audio_url=audio_server.publish(tone_wav)
    )
    call_id = running.gateway.place_call(request).call_id
    status = running.wait_terminal([call_id])[call_id]
    assert (status.state, status.key_pressed) == (CallState.COMPLETED, "9")
    # The key ends the grace period at once rather than at the end of the file.
    assert status.duration_s < 0.2 + 4.0 + 2.0


def test_the_same_key_never_places_a_second_call(callee, make_service, audio_server, tone_wav):
    running = make_service(callee.host, callee.port)
    gateway = running.gateway
    url = audio_server.publish(tone_wav)
    request = CallRequest(to=NUMBERS[0], idempotency_key="k-once", audio_url=url)
    first = gateway.place_call(request)
    again = gateway.place_call(request)
    assert again.call_id == first.call_id
    assert gateway.find_call("k-once").call_id == first.call_id
    assert gateway.find_call("k-never") is None
    with pytest.raises(GatewayPermanentError, match="idempotency_conflict"):
        gateway.place_call(CallRequest(to=NUMBERS[1], idempotency_key="k-once", audio_url=url))
    # Another replica of the service, on the same call book, knows the call too.
    other = make_service(callee.host, callee.port, name="sip-test-2")
    assert other.gateway.place_call(request).call_id == first.call_id
    running.wait_terminal([first.call_id])
    time.sleep(RING_S)
    assert len(callee.calls()) == 1


def test_bad_requests_are_permanent_and_place_nothing(make_service, audio_server):
    gateway = make_service("127.0.0.1", 9).gateway
    with pytest.raises(GatewayPermanentError, match="invalid_number"):
        gateway.place_call(CallRequest(to="13812345678", idempotency_key="a", audio_url="x"))
    text = audio_server.publish(b"not audio at all")
    with pytest.raises(GatewayPermanentError, match="invalid_audio"):
        gateway.place_call(CallRequest(to=NUMBERS[3], idempotency_key="b", audio_url=text))
    assert gateway.find_call("a") is None and gateway.find_call("b") is None


def test_a_stopping_service_ends_every_call_it_holds_and_takes_no_more(
    callee, make_service, audio_server, tone_wav
):
    from voice_notify.gateway.base import GatewayTransientError

    running = make_service(callee.host, callee.port, max_calls=1)
    url = audio_server.publish(tone_wav)
    placed = [
        running.gateway.place_call(
            CallRequest(to=NUMBERS[n], idempotency_key=f"k-stop-{n}", audio_url=url)
        ).call_id
        for n in (5, 15, 25)  # answer at once; one line, so two wait
    ]
    deadline = time.monotonic() + 10
    while running.gateway.call_status(placed[0]).state is not CallState.IN_PROGRESS:
        assert time.monotonic() < deadline, "the first call was never answered"
        time.sleep(0.05)
    running.service.stop(drain_s=0.0)
    statuses = {c: running.gateway.call_status(c) for c in placed}
    assert (statuses[placed[0]].state, statuses[placed[0]].error) == (
        CallState.FAILED,
        "service_stopped",
    )
    for call_id in placed[1:]:
        assert (statuses[call_id].state, statuses[call_id].error) == (
            CallState.CANCELED,
            "not_dialed",
        )
    assert running.service.busy == 0
    with pytest.raises(GatewayTransientError, match="service_stopping"):
        running.gateway.place_call(
            CallRequest(to=NUMBERS[35], idempotency_key="k-stop-late", audio_url=url)
        )
