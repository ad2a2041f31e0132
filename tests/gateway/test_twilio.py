"""The Twilio adapter, through the real ``twilio`` SDK, against the simulator's Twilio subset."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_constants import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.gateway_fixtures import CallbackReceiver
from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    GatewayPermanentError,
    GatewayTransientError,
)
from voice_notify.gateway.callbacks import parse_twilio_callback, verify_twilio_callback
from voice_notify.gateway.twilio import RebasedTwilioHttpClient, TwilioGateway
from voice_notify_dev.simulator import CALLS_FILE, SimulatorProcess, start_simulator

FROM = "+15005550006"
SEED = 5


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with start_simulator(
        tmp_path_factory.mktemp("twilio-simulator"),
        SEED,
        0.3,
        faults="",
        twilio_account_sid=TWILIO_ACCOUNT_SID,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
    ) as process:
        yield process


def _gateway(simulator: SimulatorProcess, token: str = TWILIO_AUTH_TOKEN, **kw) -> TwilioGateway:
    return TwilioGateway(TWILIO_ACCOUNT_SID, token, FROM, base_url=simulator.url, **kw)


def _request(audio_base_url: str, to: str, key: str, callback: str | None = None) -> CallRequest:
    return CallRequest(
        to=to,
        idempotency_key=key,
        audio_url=f"{audio_base_url}/tone.wav",
        ring_timeout_s=25,
        status_callback_url=callback,
    )


def _lines(state_dir: Path, **match: str) -> list[dict]:
    lines = map(json.loads, (state_dir / CALLS_FILE).read_text().splitlines())
    return [r for r in lines if all(r.get(k) == v for k, v in match.items())]


def _wait_for_end(gateway: TwilioGateway, sid: str) -> None:
    deadline = time.monotonic() + 5
    while not gateway.call_status(sid).terminal and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_http_client_rewrites_only_twilio_hosts() -> None:
    client = RebasedTwilioHttpClient("http://127.0.0.1:9/")

    assert (
        client.rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json?To=%2B1")
        == "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Calls.json?To=%2B1"
    )
    assert client.rebase("https://example.org/x") == "https://example.org/x"


def test_place_call_sends_twiml_amd_and_callbacks(
    simulator: SimulatorProcess, audio_base_url: str, callback_receiver: CallbackReceiver
) -> None:
    gateway = _gateway(simulator)
    callback = f"{callback_receiver.url}/callbacks/twilio?campaign=daily"

    placed = gateway.place_call(_request(audio_base_url, "+8613800000001", "tw-1", callback))

    assert placed.call_id.startswith("CA") and placed.state is CallState.QUEUED
    [line] = _lines(simulator.state_dir, call_id=placed.call_id)
    assert line["protocol"] == "twilio" and line["idempotency_key"] == "tw-1"
    assert line["audio_url"] == f"{audio_base_url}/tone.wav" and line["to"] == "+8613800000001"
    assert line["ring_timeout_s"] == 25 and line["machine_detection"] is True
    assert line["callback_events"] == ["initiated", "ringing", "answered", "completed"]
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(line["status_callback"]).query) == {
        "campaign": ["daily"],
        "ik": ["tw-1"],
    }
    assert line["gather_action"] == line["status_callback"]
    again = gateway.place_call(_request(audio_base_url, "+8613800000001", "tw-1", callback))
    assert again.call_id == placed.call_id  # this process placed the key: no second call
    assert len(_lines(simulator.state_dir, idempotency_key="tw-1")) == 1


def test_call_status_follows_the_call_to_its_end(
    simulator: SimulatorProcess, audio_base_url: str
) -> None:
    gateway = _gateway(simulator)
    placed = gateway.place_call(_request(audio_base_url, "+8613800000002", "tw-2"))

    _wait_for_end(gateway, placed.call_id)
    ended = gateway.call_status(placed.call_id)

    assert ended.terminal and ended.idempotency_key == "tw-2"
    if ended.state is CallState.COMPLETED:
        assert ended.answered_by in ("human", "machine") and ended.duration_s == 1.0
    assert ended.key_pressed is None  # Twilio tells key presses only to the Gather action


def test_find_call_searches_the_call_log_by_number_and_time(
    simulator: SimulatorProcess, audio_base_url: str
) -> None:
    since = dt.datetime.now(dt.UTC)
    placed = _gateway(simulator).place_call(_request(audio_base_url, "+8613800000003", "tw-3"))
    _gateway(simulator).place_call(_request(audio_base_url, "+8613800000004", "tw-4"))
    fresh = _gateway(simulator)  # another process: nothing remembered

    found = fresh.find_call("tw-3", to="+8613800000003", since=since)
    assert found is not None and (found.call_id, found.idempotency_key) == (placed.call_id, "tw-3")
    assert fresh.find_call("tw-5", to="+8613800000005", since=since) is None
    later = since + dt.timedelta(minutes=5)
    assert fresh.find_call("tw-3b", to="+8613800000003", since=later) is None
    with pytest.raises(ValueError, match="to= and since="):
        fresh.find_call("tw-3c")


def test_two_calls_in_the_window_are_ambiguous_not_none(
    simulator: SimulatorProcess, audio_base_url: str
) -> None:
    since = dt.datetime.now(dt.UTC)
    for key in ("tw-6a", "tw-6b"):
        _gateway(simulator).place_call(_request(audio_base_url, "+8613800000006", key))

    with pytest.raises(GatewayTransientError, match="ambiguous"):
        _gateway(simulator).find_call("tw-6a", to="+8613800000006", since=since)


def test_the_sdk_lists_and_pages_calls(simulator: SimulatorProcess, audio_base_url: str) -> None:
    gateway = _gateway(simulator)
    placed = [
        gateway.place_call(_request(audio_base_url, "+8613800000007", f"tw-7{n}")).call_id
        for n in range(3)
    ]

    listed = gateway._client.calls.list(to="+8613800000007", page_size=2)

    assert [call.sid for call in listed] == placed[::-1]  # newest first, across two pages
    assert {call.to for call in listed} == {"+8613800000007"}


def test_rejections_are_permanent(simulator: SimulatorProcess, audio_base_url: str) -> None:
    gateway = _gateway(simulator)

    with pytest.raises(GatewayPermanentError, match="twilio_21211"):
        gateway.place_call(_request(audio_base_url, "13800000008", "tw-8"))
    with pytest.raises(GatewayPermanentError, match="twilio_11200"):
        gateway.place_call(
            CallRequest(to="+8613800000008", idempotency_key="tw-8", audio_url=audio_base_url)
        )
    with pytest.raises(GatewayPermanentError, match="twilio_20404"):
        gateway.call_status("CA" + "0" * 32)
    assert _lines(simulator.state_dir, to="+8613800000008") == []


def test_a_wrong_auth_token_is_401(simulator: SimulatorProcess, audio_base_url: str) -> None:
    with pytest.raises(GatewayPermanentError, match=r"twilio_20003.*HTTP 401"):
        _gateway(simulator, "wrong-token").place_call(
            _request(audio_base_url, "+8613800000009", "tw-9")
        )
    assert _lines(simulator.state_dir, to="+8613800000009") == []


def test_callbacks_and_key_presses_are_signed_for_the_auth_token(
    simulator: SimulatorProcess, audio_base_url: str, callback_receiver: CallbackReceiver
) -> None:
    from voice_notify_dev.simulator import Outcome, draw_outcome

    key = next(
        f"tw-10-{n}" for n in range(500) if draw_outcome(SEED, f"tw-10-{n}") is Outcome.CONFIRM
    )
    callback = f"{callback_receiver.url}/callbacks/twilio"
    placed = _gateway(simulator).place_call(
        _request(audio_base_url, "+8613800000010", key, callback)
    )

    received = callback_receiver.wait_for(placed.call_id, 5)
    events = []
    for r in received:
        form = dict(urllib.parse.parse_qsl(r.body.decode()))
        url = callback_receiver.url + r.path
        verify_twilio_callback(TWILIO_AUTH_TOKEN, url, form, r.headers["X-Twilio-Signature"])
        ik = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["ik"][0]
        events += [(e.kind, e.sequence, e.key_pressed) for e in parse_twilio_callback(form, ik)]

    assert events == [
        ("queued", 0, None),
        ("ringing", 1, None),
        ("in_progress", 2, None),
        ("digits", 0, "1"),
        ("completed", 3, None),
    ]


def test_faults_apply_to_the_twilio_path_and_lookup_resolves_them(
    tmp_path: Path, audio_base_url: str, callback_receiver: CallbackReceiver
) -> None:
    with start_simulator(
        tmp_path,
        SEED,
        0.3,
        faults="timeout_after_accept=1",
        fault_delay_s=1.0,
        twilio_account_sid=TWILIO_ACCOUNT_SID,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
    ) as faulty:
        gateway = _gateway(faulty, timeout_s=0.5)
        since = dt.datetime.now(dt.UTC)
        callback = f"{callback_receiver.url}/callbacks/twilio"

        with pytest.raises(GatewayTransientError):
            gateway.place_call(_request(audio_base_url, "+8613800000011", "tw-11", callback))
        found = gateway.find_call("tw-11", to="+8613800000011", since=since)

        assert found is not None and found.idempotency_key == "tw-11"
        assert [r["call_id"] for r in _lines(tmp_path, idempotency_key="tw-11")] == [found.call_id]
