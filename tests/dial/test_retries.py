"""Green runs under faults: transient gateway failures are retried per call, inside the
dial step, with bounded exponential backoff and a look-up before every resend; what
still cannot be placed is left for the reconcile DAG, and only a gateway that looks
down fails the task."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dial.test_dialer import DAY, _calls, _crm, _ctx, _rows, _synthesized
from voice_notify.dial import dialer as dispatch
from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayTransientError,
)
from voice_notify.gateway.http import SimulatorGateway
from voice_notify_dev.simulator import start_simulator

ACCEPT = "accept"
FAIL_BEFORE = "fail_before_accept"  # 5xx, nothing created
FAIL_AFTER = "fail_after_accept"  # created, then a timeout or a 5xx


class ScriptedGateway:
    """A gateway whose answers to ``place_call`` follow a script per notice."""

    name = "scripted"

    def __init__(self, scripts: dict[int, list[str]], lookups_fail: bool = False) -> None:
        self.scripts = scripts
        self.lookups_fail = lookups_fail
        self.calls: dict[str, CallStatus] = {}
        self.log: list[tuple[str, str]] = []

    def place_call(self, request: CallRequest) -> CallStatus:
        self.log.append(("place", request.idempotency_key))
        if request.idempotency_key in self.calls:
            return self.calls[request.idempotency_key]
        script = self.scripts.get(int(request.metadata["notice_id"]), [])
        step = script.pop(0) if script else ACCEPT
        if step == FAIL_BEFORE:
            raise GatewayTransientError("HTTP 503 (scripted)")
        status = CallStatus(
            f"c-{request.idempotency_key}", request.idempotency_key, CallState.QUEUED
        )
        self.calls[request.idempotency_key] = status
        if step == FAIL_AFTER:
            raise GatewayTransientError("read timed out (scripted)")
        return status

    def find_call(self, idempotency_key: str, *, to=None, since=None) -> CallStatus | None:
        self.log.append(("find", idempotency_key))
        if self.lookups_fail:
            raise GatewayTransientError("lookup timed out (scripted)")
        return self.calls.get(idempotency_key)

    def call_status(self, call_id: str) -> CallStatus:
        raise NotImplementedError


def _ctx_with(gateway, waits: list[float], attempts: int = 4) -> dispatch.DialContext:
    ctx = _ctx(gateway, lambda key: f"http://audio.example/{key}")
    return dispatch.DialContext(
        **{
            **ctx.__dict__,
            "place_attempts": attempts,
            "retry_initial_s": 0.5,
            "retry_max_s": 8.0,
            "sleep": waits.append,
        }
    )


@pytest.fixture
def engine(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    _crm(engine, n=6)
    yield engine
    engine.dispose()


def test_each_retry_looks_the_call_up_before_sending_it_again(engine):
    gateway = ScriptedGateway(
        {
            1: [FAIL_BEFORE, FAIL_BEFORE],  # placed on the third try
            2: [FAIL_AFTER],  # accepted though the answer failed: found, not resent
            3: [],
        }
    )
    waits: list[float] = []
    rows = _synthesized(engine, [1, 2, 3])
    counts = dispatch.dial_rows(engine, engine, rows, _ctx_with(gateway, waits))
    assert counts.dialed == 3 and counts.left_for_reconcile == 0 and not counts.gateway_down
    key = {n: dispatch.idempotency_key(n, DAY, 1) for n in (1, 2, 3)}
    assert [op for op in gateway.log if op[1] == key[1]] == [
        ("place", key[1]),
        ("find", key[1]),
        ("place", key[1]),
        ("find", key[1]),
        ("place", key[1]),
    ]
    assert [op for op in gateway.log if op[1] == key[2]] == [("place", key[2]), ("find", key[2])]
    assert waits == [0.5, 1.0, 0.5]  # exponential per call
    assert {r.state for r in _rows(engine).values()} == {"dialed"}


def test_a_call_still_failing_is_left_for_reconcile_and_the_run_stays_green(engine):
    gateway = ScriptedGateway({1: [FAIL_BEFORE] * 10})
    waits: list[float] = []
    rows = _synthesized(engine, [1, 2, 3, 4, 5])
    counts = dispatch.dial_rows(engine, engine, rows, _ctx_with(gateway, waits))
    assert (counts.dialed, counts.left_for_reconcile, counts.attempted) == (4, 1, 5)
    assert waits == [0.5, 1.0, 2.0]  # bounded: four tries, three waits
    assert not counts.gateway_down
    assert _rows(engine)[1].state == "dialing"  # the reconcile DAG looks it up first
    from voice_notify.airflow import tasks

    tasks._raise_for_retry(counts)  # a few calls left: the task succeeds
    assert counts.as_dict()["left_for_reconcile"] == 1


def test_a_gateway_that_looks_down_fails_the_task_with_a_message_an_operator_reads(engine):
    from voice_notify.airflow import tasks

    gateway = ScriptedGateway({n: [FAIL_BEFORE] * 10 for n in (1, 2, 3, 4)})
    rows = _synthesized(engine, [1, 2, 3, 4, 5])
    counts = dispatch.dial_rows(engine, engine, rows, _ctx_with(gateway, []))
    assert (counts.dialed, counts.left_for_reconcile) == (1, 4) and counts.gateway_down
    with pytest.raises(dispatch.GatewayDown) as raised:
        tasks._raise_for_retry(counts)
    message = str(raised.value)
    assert "voice gateway 'scripted' looks down: 4 of 5 calls" in message
    assert "4 tries" in message and "HTTP 503 (scripted)" in message
    assert "voice_notice_reconcile" in message
    # Nobody was called twice: one accepted call per key.
    placed = Counter(key for op, key in gateway.log if op == "place")
    assert len(gateway.calls) == 1 and max(placed.values()) == 4


def test_a_failing_look_up_never_leads_to_a_blind_resend(engine):
    gateway = ScriptedGateway({1: [FAIL_AFTER]}, lookups_fail=True)
    rows = _synthesized(engine, [1])
    counts = dispatch.dial_rows(engine, engine, rows, _ctx_with(gateway, []))
    assert counts.left_for_reconcile == 1
    assert [op for op, _ in gateway.log] == ["place", "find", "find", "find", "find"]


def test_a_fault_mix_places_every_call_once_within_the_task(tmp_path, audio_url):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    _crm(engine, n=20)
    mix = "error_before_accept=0.3,error_after_accept=0.2,timeout_after_accept=0.2"
    with start_simulator(
        tmp_path / "gateway", seed=21, call_seconds=0.2, faults=mix, fault_delay_s=1.0
    ) as sim:
        gateway = SimulatorGateway(sim.url, timeout_s=0.5)
        rows = _synthesized(engine, range(1, 21))
        counts = dispatch.dial_rows(engine, engine, rows, _ctx(gateway, audio_url))
        calls = _calls(sim)
    per_key = Counter(c["idempotency_key"] for c in calls)
    assert max(per_key.values()) == 1  # zero duplicates
    assert counts.dialed + counts.left_for_reconcile == 20
    assert counts.left_for_reconcile <= 1 and not counts.gateway_down
    dialed = {r.call_id for r in _rows(engine).values() if r.state == "dialed"}
    assert dialed <= {c["call_id"] for c in calls}
    engine.dispose()


def test_retry_waits_are_bounded(engine):
    waits: list[float] = []
    gateway = ScriptedGateway({1: [FAIL_BEFORE] * 20})
    ctx = _ctx_with(gateway, waits, attempts=8)
    dispatch.dial_rows(engine, engine, _synthesized(engine, [1]), ctx)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert sum(waits) < 60
    assert dt.timedelta(seconds=sum(waits)) < dt.timedelta(minutes=1)


def test_a_row_is_resumed_only_after_its_placement_can_have_ended(engine):
    """Another worker resumes a row in ``dialing`` only once the worker that holds it
    can no longer be retrying it: every look-up and send at the request timeout,
    and the backoff tenacity really waited between them."""
    waits: list[float] = []
    gateway = ScriptedGateway({1: [FAIL_BEFORE] * 20})
    ctx = _ctx_with(gateway, waits, attempts=5)
    dispatch.dial_rows(engine, engine, _synthesized(engine, [1]), ctx)
    requests = len(gateway.log)  # each a look-up or a send, each at most the timeout
    assert ctx.place_attempts < requests <= 2 * ctx.place_attempts
    assert ctx.longest_placement_s(10.0) >= requests * 10.0 + sum(waits)
    assert ctx.longest_placement_s(10.0) - (requests * 10.0 + sum(waits)) <= 10.0
