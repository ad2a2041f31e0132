"""Faults the simulator injects into placing calls, and the client's view of them.

Each test picks an idempotency key whose seeded draws give exactly the fault it
needs on attempt 1 (and a clean attempt 2), then checks the invariant that
matters: the client sees a transient error, ``find_call`` tells the truth, and
``calls.jsonl`` holds at most one call per key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.gateway_constants import (
    FAULT_DELAY_S,
    FAULT_SEED,
    REQUEST_FAULTS,
    drawn_faults,
    pick_key,
)
from voice_notify.gateway.base import CallRequest, GatewayTransientError
from voice_notify.gateway.http import HttpGateway
from voice_notify_dev import faults
from voice_notify_dev.faults import FAULT_NAMES, fault_draw, parse_faults
from voice_notify_dev.simulator import CALLS_FILE, SimulatorProcess, start_simulator

NUMBER = "+8613812345678"
CLIENT_TIMEOUT_S = 0.5  # well under FAULT_DELAY_S, as the fault delay must be


def _request(audio_base_url: str, key: str) -> CallRequest:
    return CallRequest(to=NUMBER, idempotency_key=key, audio_url=f"{audio_base_url}/tone.wav")


def _lines(simulator: SimulatorProcess, key: str) -> list[dict]:
    text = (simulator.state_dir / CALLS_FILE).read_text(encoding="utf-8")
    return [r for r in map(json.loads, text.splitlines()) if r["idempotency_key"] == key]


@pytest.fixture
def gateway(faulty_simulator: SimulatorProcess) -> HttpGateway:
    return HttpGateway(faulty_simulator.url, timeout_s=CLIENT_TIMEOUT_S)


# --- the configuration -----------------------------------------------------------------------


def test_faults_spec_names_every_fault() -> None:
    plan = parse_faults(" timeout_after_accept=0.1, duplicate_callback=1 ,late_callback=0")

    assert dict(plan.probabilities) == {
        "timeout_after_accept": 0.1,
        "duplicate_callback": 1.0,
        "late_callback": 0.0,
    }
    assert not parse_faults("") and not parse_faults(None) and not parse_faults("late_callback=0")
    assert set(FAULT_NAMES) == {
        "timeout_after_accept",
        "error_before_accept",
        "error_after_accept",
        "duplicate_callback",
        "late_callback",
        "out_of_order_callback",
        "slow_audio_fetch",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timeout=0.1", "unknown fault 'timeout'"),
        ("late_callback", "bad probability"),
        ("late_callback=often", "bad probability"),
        ("late_callback=1.5", "bad probability"),
        ("late_callback=-0.1", "bad probability"),
        ("late_callback=nan", "bad probability"),
    ],
)
def test_bad_faults_spec_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


def test_simulator_refuses_to_start_on_a_bad_environment_variable(tmp_path: Path) -> None:
    env = dict(os.environ, GATEWAY_FAULTS="error_after_accept=0.1,dns_failure=0.2")
    env["PYTHONPATH"] = os.pathsep.join([str(Path("plugins").resolve()), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "voice_notify_dev.simulator"]
    command += ["--state-dir", str(tmp_path), "--seed", "1"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "dns_failure" in done.stderr
    assert not (tmp_path / "server.json").exists()


def test_start_simulator_refuses_a_bad_faults_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        start_simulator(tmp_path, FAULT_SEED, faults="error_after=1")


def test_draws_depend_on_seed_key_attempt_and_name_only() -> None:
    draw = fault_draw(7, "vn-1-2026-11-26-1", 1, "error_after_accept")

    assert draw == fault_draw(7, "vn-1-2026-11-26-1", 1, "error_after_accept")
    others = [
        fault_draw(8, "vn-1-2026-11-26-1", 1, "error_after_accept"),
        fault_draw(7, "vn-2-2026-11-26-1", 1, "error_after_accept"),
        fault_draw(7, "vn-1-2026-11-26-1", 2, "error_after_accept"),
        fault_draw(7, "vn-1-2026-11-26-1", 1, "error_before_accept"),
    ]
    assert draw not in others
    plan = parse_faults("error_after_accept=0.2")
    hits = Counter(plan.fires(7, f"k{n}", 1, faults.ERROR_AFTER_ACCEPT) for n in range(2000))
    assert hits[True] / 2000 == pytest.approx(0.2, abs=0.03)


# --- request faults, through the HTTP adapter ------------------------------------------------


def test_requests_fail_exactly_as_drawn(gateway: HttpGateway, audio_base_url: str) -> None:
    # Same seed, key and attempt: the same fault, on every run; the draw is the whole story.
    keys = [f"determinism-{n}" for n in range(40)]
    errors = {faults.ERROR_BEFORE_ACCEPT, faults.ERROR_AFTER_ACCEPT}
    quick = [k for k in keys if not drawn_faults(k, 1, REQUEST_FAULTS) - errors]

    failed = []
    for key in quick:
        try:
            gateway.place_call(_request(audio_base_url, key))
        except GatewayTransientError:
            failed.append(key)

    assert failed == [k for k in quick if drawn_faults(k, 1, errors)]
    assert len(quick) >= 4 and failed and len(failed) < len(quick)


def test_error_before_accept_creates_nothing_and_a_retry_succeeds(
    gateway: HttpGateway, faulty_simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = pick_key("before", {faults.ERROR_BEFORE_ACCEPT}, set())

    with pytest.raises(GatewayTransientError, match="service_unavailable"):
        gateway.place_call(_request(audio_base_url, key))

    assert gateway.find_call(key) is None
    assert _lines(faulty_simulator, key) == []
    placed = gateway.place_call(_request(audio_base_url, key))
    assert [line["call_id"] for line in _lines(faulty_simulator, key)] == [placed.call_id]


def test_error_after_accept_leaves_one_call_that_find_call_finds(
    gateway: HttpGateway, faulty_simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = pick_key("after", {faults.ERROR_AFTER_ACCEPT}, set())

    with pytest.raises(GatewayTransientError, match="internal_error"):
        gateway.place_call(_request(audio_base_url, key))

    found = gateway.find_call(key, to=NUMBER)
    assert found is not None and found.idempotency_key == key
    again = gateway.place_call(_request(audio_base_url, key))  # attempt 2 draws no fault
    assert again.call_id == found.call_id
    assert [line["call_id"] for line in _lines(faulty_simulator, key)] == [found.call_id]


def test_timeout_after_accept_leaves_one_call_that_find_call_finds(
    gateway: HttpGateway, faulty_simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = pick_key("timeout", {faults.TIMEOUT_AFTER_ACCEPT}, set())
    started = time.monotonic()

    with pytest.raises(GatewayTransientError, match="timed out"):
        gateway.place_call(_request(audio_base_url, key))

    assert time.monotonic() - started < FAULT_DELAY_S  # the client gave up, not the server
    found = gateway.find_call(key)
    assert found is not None
    assert [line["call_id"] for line in _lines(faulty_simulator, key)] == [found.call_id]
    assert gateway.place_call(_request(audio_base_url, key)).call_id == found.call_id
    assert len(_lines(faulty_simulator, key)) == 1


def test_slow_audio_fetch_times_out_but_the_call_is_still_made(
    gateway: HttpGateway, faulty_simulator: SimulatorProcess, audio_base_url: str
) -> None:
    key = pick_key("slow", {faults.SLOW_AUDIO_FETCH}, set())

    with pytest.raises(GatewayTransientError, match="timed out"):
        gateway.place_call(_request(audio_base_url, key))

    assert gateway.find_call(key) is None  # still fetching: not accepted yet
    deadline = time.monotonic() + FAULT_DELAY_S + 3.0
    while (found := gateway.find_call(key)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found is not None
    assert [line["call_id"] for line in _lines(faulty_simulator, key)] == [found.call_id]
