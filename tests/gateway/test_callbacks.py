"""Status callbacks: signing and verification, parsing, and delivery under faults."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from tests.support.gateway_constants import CALL_SECONDS, CALLBACK_SECRET, FAULT_DELAY_S, pick_key
from tests.support.gateway_fixtures import CallbackReceiver, ReceivedCallback
from voice_notify.gateway.base import CallRequest, CallState
from voice_notify.gateway.callbacks import (
    InvalidCallback,
    InvalidSignature,
    parse_http_callback,
    parse_twilio_callback,
    sign_http_callback,
    verify_http_callback,
    verify_twilio_callback,
)
from voice_notify.gateway.http import HttpGateway
from voice_notify_dev import faults
from voice_notify_dev.simulator import Outcome, SimulatorProcess

NUMBER = "+8613812345678"
BODY = json.dumps({"call_id": "sim-1", "state": "ringing", "sequence": 0}).encode()
NOW = 1_790_000_000


# --- verification ----------------------------------------------------------------------------


def test_a_signed_callback_verifies() -> None:
    headers = sign_http_callback(CALLBACK_SECRET, BODY, timestamp=NOW)

    verify_http_callback(CALLBACK_SECRET, headers, BODY, now=NOW + 10)
    lowered = {name.lower(): value for name, value in headers.items()}
    verify_http_callback(CALLBACK_SECRET, lowered, BODY, now=NOW)


@pytest.mark.parametrize(
    ("secret", "body", "now", "reason"),
    [
        ("another-secret", BODY, NOW, "does not match"),
        (CALLBACK_SECRET, BODY.replace(b"ringing", b"completed"), NOW, "does not match"),
        (CALLBACK_SECRET, BODY, NOW + 301, "off"),
        (CALLBACK_SECRET, BODY, NOW - 301, "off"),
    ],
    ids=["forged", "tampered", "stale", "from the future"],
)
def test_bad_callbacks_are_rejected(secret: str, body: bytes, now: float, reason: str) -> None:
    headers = sign_http_callback(secret, BODY, timestamp=NOW)

    with pytest.raises(InvalidSignature, match=reason):
        verify_http_callback(CALLBACK_SECRET, headers, body, now=now)


def test_unsigned_or_retimed_callbacks_are_rejected() -> None:
    headers = sign_http_callback(CALLBACK_SECRET, BODY, timestamp=NOW)

    with pytest.raises(InvalidSignature, match="not signed"):
        verify_http_callback(CALLBACK_SECRET, {}, BODY, now=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        # A replay with a fresh timestamp header: the signature covers the timestamp.
        verify_http_callback(
            CALLBACK_SECRET, {**headers, "X-VoiceNotify-Timestamp": str(NOW + 400)}, BODY, now=NOW
        )
    with pytest.raises(InvalidSignature):
        verify_http_callback("", headers, BODY, now=NOW)


def test_twilio_signatures_are_checked() -> None:
    from twilio.request_validator import RequestValidator

    url = "https://airflow.example/voice-notify/callbacks/twilio?ik=vn-1-2026-11-26-1"
    form = {"CallSid": "CA1", "CallStatus": "ringing", "SequenceNumber": "1"}
    signature = RequestValidator("token").compute_signature(url, form)

    verify_twilio_callback("token", url, form, signature)
    for token, at, sent, sig in [
        ("other-token", url, form, signature),
        ("token", url.replace("ik=vn-1", "ik=vn-2"), form, signature),
        ("token", url, {**form, "CallStatus": "completed"}, signature),
        ("token", url, form, None),
    ]:
        with pytest.raises(InvalidSignature):
            verify_twilio_callback(token, at, sent, sig)


# --- parsing ---------------------------------------------------------------------------------


def test_http_callbacks_parse_into_events() -> None:
    body = json.dumps(
        [
            {"call_id": "sim-1", "idempotency_key": "k", "state": "digits", "sequence": 2}
            | {"key_pressed": "9", "answered_by": "human"},
            {"call_id": "sim-1", "idempotency_key": "k", "state": "completed", "sequence": 3}
            | {"duration_s": 12.5, "occurred_at": "2026-11-26T08:00:00+00:00"},
        ]
    ).encode()

    digits, completed = parse_http_callback(body)

    assert (digits.kind, digits.sequence, digits.key_pressed) == ("digits", 2, "9")
    assert (completed.kind, completed.duration_s) == ("completed", 12.5)
    assert completed.occurred_at is not None and completed.occurred_at.hour == 8


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"state": "ringing", "sequence": 0}',
        b'{"call_id": "sim-1", "state": "hung_up", "sequence": 0}',
        b'{"call_id": "sim-1", "state": "ringing", "sequence": "0"}',
        b'{"call_id": "sim-1", "state": "digits", "sequence": 1}',
    ],
)
def test_malformed_http_callbacks_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidCallback):
        parse_http_callback(body)


def test_twilio_callbacks_parse_into_events() -> None:
    status = {"CallSid": "CA1", "CallStatus": "no-answer", "SequenceNumber": "3"}
    answered = {"CallSid": "CA1", "CallStatus": "in-progress", "SequenceNumber": "2"}
    answered |= {"AnsweredBy": "machine_end_beep", "Timestamp": "Thu, 26 Nov 2026 08:00:01 +0000"}
    gather = {"CallSid": "CA1", "CallStatus": "in-progress", "Digits": "1"}

    [ended] = parse_twilio_callback(status, "k")
    [picked_up] = parse_twilio_callback(answered, None)
    [pressed] = parse_twilio_callback(gather, "k")

    assert (ended.kind, ended.sequence, ended.idempotency_key) == ("no_answer", 3, "k")
    assert (picked_up.kind, picked_up.answered_by) == ("in_progress", "machine")
    assert picked_up.occurred_at is not None and picked_up.occurred_at.second == 1
    assert (pressed.kind, pressed.key_pressed) == ("digits", "1")
    with pytest.raises(InvalidCallback):
        parse_twilio_callback(
            {"CallSid": "CA1", "CallStatus": "hung-up", "SequenceNumber": "1"}, ""
        )


# --- delivery from the simulator -------------------------------------------------------------


def _place(
    simulator: SimulatorProcess, receiver: CallbackReceiver, audio_base_url: str, key: str
) -> str:
    gateway = HttpGateway(simulator.url, timeout_s=5.0)
    request = CallRequest(
        to=NUMBER,
        idempotency_key=key,
        audio_url=f"{audio_base_url}/tone.wav",
        status_callback_url=f"{receiver.url}/callbacks/http",
    )
    return gateway.place_call(request).call_id


def _events(received: list[ReceivedCallback]) -> list[tuple[str, int]]:
    events = []
    for callback in received:
        verify_http_callback(CALLBACK_SECRET, callback.headers, callback.body)
        events += [(e.kind, e.sequence) for e in parse_http_callback(callback.body)]
    return events


def test_callbacks_report_every_state_change_signed(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("callbacks", set(), callbacks=set(), outcomes={Outcome.CONFIRM})

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 4)

    assert _events(received) == [
        ("ringing", 0),
        ("in_progress", 1),
        ("digits", 2),
        ("completed", 3),
    ]
    assert callback_receiver.matching(call_id)[0].path == "/callbacks/http"
    last = parse_http_callback(received[-1].body)[0]
    assert (last.idempotency_key, last.key_pressed, last.answered_by) == (key, "1", "human")


def test_answering_machines_are_detected(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("machine", set(), callbacks=set(), outcomes={Outcome.MACHINE})

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 3)

    ended = parse_http_callback(received[-1].body)[0]
    assert (ended.kind, ended.answered_by, ended.key_pressed) == ("completed", "machine", None)
    status = HttpGateway(faulty_simulator.url).call_status(call_id)
    assert (status.state, status.answered_by) == (CallState.COMPLETED, "machine")


def test_duplicate_callbacks_arrive_twice_byte_for_byte(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("dup", set(), callbacks={faults.DUPLICATE_CALLBACK}, outcomes={Outcome.BUSY})

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 4)

    assert _events(received) == [("ringing", 0), ("ringing", 0), ("busy", 1), ("busy", 1)]
    assert received[0].body == received[1].body and received[2].body == received[3].body


def test_out_of_order_callbacks_deliver_the_end_first(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key(
        "ooo", set(), callbacks={faults.OUT_OF_ORDER_CALLBACK}, outcomes={Outcome.COMPLETED}
    )

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 3)

    assert _events(received) == [("completed", 2), ("ringing", 0), ("in_progress", 1)]


def test_late_callbacks_arrive_after_polling_saw_the_end(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("late", set(), callbacks={faults.LATE_CALLBACK}, outcomes={Outcome.NO_ANSWER})
    gateway = HttpGateway(faulty_simulator.url)

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    while not gateway.call_status(call_id).terminal:
        time.sleep(0.02)
    ended_by_polling = time.time()
    assert callback_receiver.matching(call_id) == []
    received = callback_receiver.wait_for(call_id, 2, timeout_s=FAULT_DELAY_S + 3)

    assert _events(received) == [("ringing", 0), ("no_answer", 1)]
    assert min(r.received_at for r in received) > ended_by_polling


def test_failed_deliveries_are_retried(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("retry", set(), callbacks=set(), outcomes={Outcome.BUSY})
    callback_receiver.fail_next(2)

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 2, timeout_s=CALL_SECONDS + 3)

    assert sorted(_events(received), key=lambda e: e[1]) == [("ringing", 0), ("busy", 1)]


def test_callbacks_carry_no_phone_number(
    faulty_simulator: SimulatorProcess, callback_receiver: CallbackReceiver, audio_base_url: str
) -> None:
    key = pick_key("nonumber", set(), callbacks=set(), outcomes={Outcome.FAILED})

    call_id = _place(faulty_simulator, callback_receiver, audio_base_url, key)
    received = callback_receiver.wait_for(call_id, 2)

    assert received and all(NUMBER.encode() not in r.body for r in received)
    assert NUMBER not in urllib.parse.unquote(faulty_simulator.log_path.read_text())
