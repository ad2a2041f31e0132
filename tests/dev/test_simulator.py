"""The voice gateway simulator and its client, against the real server in a subprocess."""

from __future__ import annotations

import http.server
import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayPermanentError,
    GatewayTransientError,
)
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.phone import mask_phone
from voice_notify_dev.simulator import (
    CALLS_FILE,
    DEFAULT_OUTCOMES,
    EVENTS_FILE,
    SERVER_FILE,
    Outcome,
    SimulatedCall,
    SimulatorProcess,
    draw_outcome,
    is_e164,
    parse_outcomes,
    start_simulator,
)

NUMBER = "+8613812345678"
SEED = 7
CALL_SECONDS = 0.3


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """One simulator for the module; tests keep apart by using their own idempotency keys."""
    with start_simulator(tmp_path_factory.mktemp("simulator"), SEED, CALL_SECONDS) as process:
        yield process


@pytest.fixture
def gateway(simulator: SimulatorProcess) -> Iterator[SimulatorGateway]:
    client = SimulatorGateway(simulator.url)
    yield client
    client.close()


def _request(
    audio_base_url: str, key: str, to: str = NUMBER, audio: str = "tone.wav"
) -> CallRequest:
    return CallRequest(
        to=to,
        idempotency_key=key,
        audio_url=f"{audio_base_url}/{audio}",
        metadata={"notice_id": key},
    )


def _records(state_dir: Path, name: str, key: str) -> list[dict[str, Any]]:
    path = state_dir / name
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["idempotency_key"] == key]


def _wait_for_end(gateway: SimulatorGateway, call_id: str, timeout_s: float = 5.0) -> CallStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = gateway.call_status(call_id)
        if status.terminal or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _expected_end(key: str, seed: int = SEED) -> tuple[CallState, str | None]:
    outcome = draw_outcome(seed, key)
    return outcome.state, outcome.key_pressed


# --- placing calls ---------------------------------------------------------------------------


def test_place_call_twice_with_one_key_makes_one_call(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str
) -> None:
    request = _request(audio_base_url, "notice-1/2025-06-01/1")

    first = gateway.place_call(request)
    second = gateway.place_call(request)

    assert first.call_id == second.call_id
    assert not first.terminal  # just accepted: queued, not yet ended
    [record] = _records(simulator.state_dir, CALLS_FILE, request.idempotency_key)
    assert record["call_id"] == first.call_id
    assert record["to"] == NUMBER
    assert record["audio_url"] == request.audio_url
    assert record["metadata"] == {"notice_id": request.idempotency_key}
    assert record["audio_format"] == "ULAW 8000 Hz"
    assert record["audio_seconds"] == pytest.approx(1.0)
    accepted_at = datetime.fromisoformat(record["accepted_at"])
    assert accepted_at.utcoffset() == timedelta(0)


def test_racing_requests_with_one_key_make_one_call(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str
) -> None:
    request = _request(audio_base_url, "notice-race/2025-06-01/1")

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: gateway.place_call(request), range(6)))

    assert len({status.call_id for status in statuses}) == 1
    assert len(_records(simulator.state_dir, CALLS_FILE, request.idempotency_key)) == 1


@pytest.mark.parametrize(
    "change",
    [{"to": "+8613900001111"}, {"audio": "tone.wav?v=2"}],
    ids=["other number", "other audio"],
)
def test_reusing_a_key_for_another_call_is_a_conflict(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str, change: dict
) -> None:
    key = f"notice-2/2025-06-01/{sorted(change)[0]}"
    gateway.place_call(_request(audio_base_url, key))

    with pytest.raises(GatewayPermanentError, match="idempotency_conflict"):
        gateway.place_call(_request(audio_base_url, key, **change))

    assert len(_records(simulator.state_dir, CALLS_FILE, key)) == 1


@pytest.mark.parametrize(
    "to", ["13812345678", "+08613812345678", "+86 138 1234 5678", "+12345", "+8613812345678901"]
)
def test_invalid_number_is_rejected_and_not_recorded(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str, to: str
) -> None:
    key = f"notice-3/{to}"

    with pytest.raises(GatewayPermanentError, match="invalid_number"):
        gateway.place_call(_request(audio_base_url, key, to=to))

    assert _records(simulator.state_dir, CALLS_FILE, key) == []
    assert gateway.find_call(key) is None


@pytest.mark.parametrize(
    ("audio", "reason"),
    [
        ("silent.wav", "silent"),
        ("empty.wav", "no frames"),
        ("not_audio.wav", "not decodable"),
        ("missing.wav", "HTTP 404"),
    ],
)
def test_unplayable_audio_is_rejected_and_not_recorded(
    gateway: SimulatorGateway,
    simulator: SimulatorProcess,
    audio_base_url: str,
    audio: str,
    reason: str,
) -> None:
    key = f"notice-4/{audio}"

    with pytest.raises(GatewayPermanentError, match="invalid_audio") as raised:
        gateway.place_call(_request(audio_base_url, key, audio=audio))

    assert reason in str(raised.value)
    assert _records(simulator.state_dir, CALLS_FILE, key) == []


def test_place_call_logs_the_number_masked(
    gateway: SimulatorGateway, audio_base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="voice_notify.gateway.http"):
        gateway.place_call(_request(audio_base_url, "notice-5/2025-06-01/1"))

    assert "+86*******5678" in caplog.text
    assert NUMBER not in caplog.text


# --- looking calls up ------------------------------------------------------------------------


def test_find_call_knows_only_accepted_calls(
    gateway: SimulatorGateway, audio_base_url: str
) -> None:
    placed = gateway.place_call(_request(audio_base_url, "notice-6/2025-06-01/1"))

    assert gateway.find_call("notice-6/2025-06-01/never-placed") is None
    found = gateway.find_call("notice-6/2025-06-01/1")
    assert found is not None
    assert (found.call_id, found.idempotency_key) == (placed.call_id, "notice-6/2025-06-01/1")


def test_status_of_an_unknown_call_is_a_permanent_error(gateway: SimulatorGateway) -> None:
    with pytest.raises(GatewayPermanentError, match="not_found"):
        gateway.call_status("sim-does-not-exist")


def test_call_ends_after_call_seconds_and_stays_ended(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = "notice-7/2025-06-01/1"
    placed = gateway.place_call(_request(audio_base_url, key))
    started = time.monotonic()

    ended = _wait_for_end(gateway, placed.call_id)

    assert ended.terminal
    assert time.monotonic() - started < CALL_SECONDS + 1.0
    assert (ended.state, ended.key_pressed) == _expected_end(key)
    time.sleep(CALL_SECONDS / 2)
    assert gateway.call_status(placed.call_id) == ended
    assert gateway.place_call(_request(audio_base_url, key)) == ended
    [event] = _records(simulator.state_dir, EVENTS_FILE, key)
    assert (event["call_id"], event["state"]) == (placed.call_id, str(ended.state))
    assert "to" not in event


def test_calls_end_as_drawn_for_the_seed(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str
) -> None:
    # One key per outcome, found through the same draw, so every ending is seen over HTTP.
    candidates = (f"notice-8/2025-06-01/{n}" for n in range(1000))
    keys = {}
    for key in candidates:
        keys.setdefault(draw_outcome(SEED, key), key)
    assert set(keys) == set(Outcome)
    placed = {o: gateway.place_call(_request(audio_base_url, k)) for o, k in keys.items()}

    ended = {o: _wait_for_end(gateway, status.call_id) for o, status in placed.items()}

    for outcome, status in ended.items():
        assert (status.state, status.key_pressed) == (outcome.state, outcome.key_pressed)
        assert status.duration_s == (pytest.approx(1.0) if outcome.answered else 0.0)
        assert status.error == ("network_error" if outcome is Outcome.FAILED else None)


def test_calls_nobody_polls_are_still_recorded_as_ended(
    gateway: SimulatorGateway, simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = "notice-9/2025-06-01/1"
    gateway.place_call(_request(audio_base_url, key))

    deadline = time.monotonic() + CALL_SECONDS + 2.0
    while not _records(simulator.state_dir, EVENTS_FILE, key) and time.monotonic() < deadline:
        time.sleep(0.05)

    [event] = _records(simulator.state_dir, EVENTS_FILE, key)
    assert event["state"] == str(_expected_end(key)[0])


# --- outcomes --------------------------------------------------------------------------------


def test_outcome_is_a_function_of_seed_and_key() -> None:
    keys = [f"notice-{n}/2025-06-01/1" for n in range(50)]

    assert [draw_outcome(SEED, k) for k in keys] == [draw_outcome(SEED, k) for k in keys]
    assert [draw_outcome(SEED, k) for k in keys] != [draw_outcome(SEED + 1, k) for k in keys]


def test_outcomes_follow_the_default_distribution() -> None:
    keys = [f"notice-{n}/2025-06-01/1" for n in range(300)]

    counts = Counter(draw_outcome(SEED, key) for key in keys)

    for outcome, probability in DEFAULT_OUTCOMES.items():
        # Loose: about five standard deviations at n=300 for the rarest outcomes.
        assert counts[outcome] / len(keys) == pytest.approx(probability, abs=0.08), outcome


def test_outcome_table_can_be_overridden() -> None:
    table = parse_outcomes("completed=0.5,no_answer=0.5")

    assert {outcome for outcome, p in table.items() if p} == {Outcome.COMPLETED, Outcome.NO_ANSWER}
    keys = [f"k{n}" for n in range(200)]
    assert {draw_outcome(SEED, key, table) for key in keys} == {
        Outcome.COMPLETED,
        Outcome.NO_ANSWER,
    }
    assert {draw_outcome(SEED, key, parse_outcomes("busy=1")) for key in keys} == {Outcome.BUSY}


@pytest.mark.parametrize("spec", ["completed=0.5", "completed=0.5,hangup=0.5", "busy", "failed=2"])
def test_bad_outcome_tables_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_outcomes(spec)


def test_call_moves_through_states_over_call_seconds() -> None:
    def call(outcome: Outcome) -> SimulatedCall:
        return SimulatedCall(
            call_id="sim-1",
            to=NUMBER,
            idempotency_key="k",
            audio_url="http://audio/k.wav",
            ring_timeout_s=30,
            metadata={},
            accepted_at="2025-06-01T08:00:00+00:00",
            audio_seconds=12.0,
            audio_format="ULAW 8000 Hz",
            outcome=outcome,
            accepted_ts=1000.0,
        )

    answered, unanswered = call(Outcome.CONFIRM), call(Outcome.NO_ANSWER)
    timeline = [1000.0, 1000.5, 1001.5, 1002.0, 1010.0]

    assert [answered.state_at(t, 2.0) for t in timeline] == [
        CallState.QUEUED,
        CallState.RINGING,
        CallState.IN_PROGRESS,
        CallState.COMPLETED,
        CallState.COMPLETED,
    ]
    assert [unanswered.state_at(t, 2.0) for t in timeline] == [
        CallState.QUEUED,
        CallState.RINGING,
        CallState.RINGING,
        CallState.NO_ANSWER,
        CallState.NO_ANSWER,
    ]


# --- the server's life -----------------------------------------------------------------------


def test_restart_with_the_same_state_dir_keeps_idempotency(
    tmp_path: Path, audio_base_url: str
) -> None:
    key = "notice-10/2025-06-01/1"
    with start_simulator(tmp_path, SEED, CALL_SECONDS) as first_run:
        placed = SimulatorGateway(first_run.url).place_call(_request(audio_base_url, key))
    # A crash halfway through writing a line must not cost the calls before it.
    with (tmp_path / CALLS_FILE).open("a") as calls:
        calls.write('{"call_id": "sim-half-writ')

    with start_simulator(tmp_path, SEED, CALL_SECONDS) as second_run:
        gateway = SimulatorGateway(second_run.url)
        again = gateway.place_call(_request(audio_base_url, key))
        with pytest.raises(GatewayPermanentError, match="idempotency_conflict"):
            gateway.place_call(_request(audio_base_url, key, to="+8613900001111"))
        other = gateway.place_call(_request(audio_base_url, "notice-10/2025-06-01/2"))

    assert second_run.url != "" and again.call_id == placed.call_id
    assert len(_records(tmp_path, CALLS_FILE, key)) == 1
    assert len(_records(tmp_path, CALLS_FILE, other.idempotency_key)) == 1


def test_outcomes_option_reaches_the_server(tmp_path: Path, audio_base_url: str) -> None:
    with start_simulator(tmp_path, SEED, call_seconds=0.05, outcomes="busy=1") as process:
        gateway = SimulatorGateway(process.url)
        placed = gateway.place_call(_request(audio_base_url, "notice-11/2025-06-01/1"))
        assert _wait_for_end(gateway, placed.call_id).state is CallState.BUSY


def test_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = start_simulator(tmp_path, SEED)
    server = json.loads((tmp_path / SERVER_FILE).read_text())
    assert server == {"url": process.url, "pid": process.pid}

    process.process.send_signal(signal.SIGTERM)

    assert process.process.wait(5) == 0
    assert not (tmp_path / SERVER_FILE).exists()
    assert "ready at " + process.url in process.log_path.read_text()
    with pytest.raises(GatewayTransientError):
        SimulatorGateway(process.url).find_call("any")


def test_start_simulator_reports_a_server_that_will_not_start(tmp_path: Path) -> None:
    (tmp_path / CALLS_FILE).write_text("not json\n")  # a state dir it cannot load

    with pytest.raises(RuntimeError, match="exited with"):
        start_simulator(tmp_path, SEED)


# --- failures the client must call transient -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_is_a_transient_error(audio_base_url: str) -> None:
    gateway = SimulatorGateway(f"http://127.0.0.1:{_free_port()}", timeout_s=1.0)

    with pytest.raises(GatewayTransientError):
        gateway.place_call(_request(audio_base_url, "notice-12/2025-06-01/1"))
    with pytest.raises(GatewayTransientError):
        gateway.find_call("notice-12/2025-06-01/1")
    with pytest.raises(GatewayTransientError):
        gateway.call_status("sim-1")


def test_silent_server_is_a_transient_error(audio_base_url: str) -> None:
    # Listens but never answers: the request times out with the call's fate unknown.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        gateway = SimulatorGateway(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.2)
        with pytest.raises(GatewayTransientError):
            gateway.place_call(_request(audio_base_url, "notice-13/2025-06-01/1"))


class _BrokenGatewayHandler(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b'{"error": "internal_error"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def broken_gateway_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenGatewayHandler)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_server_error_is_a_transient_error(broken_gateway_url: str, audio_base_url: str) -> None:
    gateway = SimulatorGateway(broken_gateway_url)

    with pytest.raises(GatewayTransientError, match="internal_error"):
        gateway.place_call(_request(audio_base_url, "notice-14/2025-06-01/1"))
    with pytest.raises(GatewayTransientError):
        gateway.find_call("notice-14/2025-06-01/1")


# --- small pure pieces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613812345678", "+86*******5678"),
        ("+14155550123", "+14*****0123"),
        ("13812345678", "*******5678"),
        ("123", "***"),
    ],
)
def test_mask_phone_keeps_only_the_last_four_digits(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+8613812345678", True),
        ("+14155550123", True),
        ("8613812345678", False),
        ("+0123456", False),
    ],
)
def test_is_e164(number: str, valid: bool) -> None:
    assert is_e164(number) is valid
