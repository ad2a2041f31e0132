"""One call per customer: two notices of one customer merged into one call, end to end on
each ledger/CRM backend: the real extract SQL, the plan, the recorded synthesis results,
dialing against the gateway simulator, settling from stored callbacks, the write-back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from synthesis.manifest import ResultItem
from synthesis.text import NoticeComposer
from tests.dial.test_dialer import ALL_DAY, DAY, NOON_UTC, _calls, _ctx
from voice_notify import ledger
from voice_notify.console import pages, queries
from voice_notify.db import migrate, schema
from voice_notify.dial import dialer
from voice_notify.dial.results import record_synthesis
from voice_notify.extract import due_notices
from voice_notify.gateway.base import CallEvent
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.plan import planner
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.report.campaign import load_report
from voice_notify.settle import intake, writeback
from voice_notify.settle import outcomes as settle
from voice_notify_dev import demo_crm

INCLUDE = Path(__file__).resolve().parents[2] / "include"
PAIR = ("repayment_reminder", "policy_renewal")
CONFIG = dataclasses.replace(
    load_campaign_config(INCLUDE / "demo" / "campaigns.yaml"),
    calling_hours=ALL_DAY,
    merged_calls={"all": (PAIR,)},
)
VARIABLES = {
    "repayment_reminder": {"amount": "3280.50", "due_date": DAY.isoformat(), "card_tail": "0427"},
    "policy_renewal": {"policy_no": "P2026A0815", "premium": 1288.05, "expiry_date": "2026-12-31"},
}
# Customer 1 has a repayment reminder (11) and a policy renewal (12) due; customer 2 a
# repayment reminder (21) only.
NOTICES = {11: (1, PAIR[0]), 12: (1, PAIR[1]), 21: (2, PAIR[0])}


@pytest.fixture(scope="module")
def composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE)


def _seed(engine: sa.Engine) -> None:
    demo_crm.create_schema(engine)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            demo_crm.customers.insert(),
            [
                {"id": 1, "name": "曾小明", "phone": "13812340001", "voice_opt_out": False},
                {"id": 2, "name": "李华", "phone": "13812340002", "voice_opt_out": False},
            ],
        )
        conn.execute(
            demo_crm.notices.insert(),
            [
                {
                    "id": notice,
                    "customer_id": customer,
                    "notice_type": kind,
                    "variables": json.dumps(VARIABLES[kind]),
                    "due_date": DAY,
                }
                for notice, (customer, kind) in NOTICES.items()
            ],
        )


def _plan(engine: sa.Engine, composer, config=CONFIG, campaign="all", workers=1):
    manifests: dict[str, bytes] = {}
    with engine.connect() as conn:
        notices = list(due_notices(conn, DAY, config))
    with engine.connect() as conn:
        summary = planner.plan_date(
            conn,
            iter(notices),
            DAY,
            config.notice_types_of(campaign),
            composer,
            config,
            planner.BatchLimits(8, 1, 1024, 2000),
            batch_key=lambda i: f"campaigns/{DAY}/{campaign}/batches/batch-{i:04d}.jsonl",
            write_manifest=lambda key, body: manifests.__setitem__(key, body),
            merge_pairs=config.merge_pairs(campaign),
            workers=workers,
        )
    items = [json.loads(line) for body in manifests.values() for line in body.splitlines()]
    return summary, items


def _rows(engine: sa.Engine) -> dict[int, sa.Row]:
    with engine.connect() as conn:
        return {r.notice_id: r for r in ledger.rows_for_date(conn, DAY)}


def _synthesize_and_dial(engine: sa.Engine, items, gateway, audio_url) -> None:
    """The worker's results for the manifest items recorded, then every due call placed."""
    results = {
        item["ledger_id"]: ResultItem(
            item["ledger_id"],
            item["notice_id"],
            "ok",
            "espeak-ng",
            1,
            "audio/tone.wav",
            telephone_bytes=8044,
        )
        for item in items
    }
    with engine.begin() as conn:
        record_synthesis(conn, ledger.rows_for_date(conn, DAY), results)
    _dial(engine, gateway, audio_url)


def _dial(engine: sa.Engine, gateway, audio_url) -> dialer.DialCounts:
    with engine.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
    return dialer.dial_rows(engine, engine, rows, _ctx(gateway, audio_url, config=CONFIG))


def _end_call(engine: sa.Engine, notice_id: int, state: str, key: str | None = None) -> None:
    """The gateway's callbacks for the call now carrying ``notice_id``, then a settle pass
    from them alone."""
    call_id = _rows(engine)[notice_id].call_id
    events = [CallEvent(call_id, state, 4, answered_by="human")]
    if key is not None:
        events.append(CallEvent(call_id, "digits", 3, key_pressed=key))
    intake.store_events(engine, events, "test")
    settle.settle_calls(engine, [DAY], None, CONFIG, NOON_UTC)


def _write_back(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        plan = writeback.load_write_back(conn, [DAY])
    return writeback.write_back(engine, plan)


def _crm(engine: sa.Engine):
    with engine.connect() as conn:
        notices = {r.id: r for r in conn.execute(sa.select(demo_crm.notices))}
        attempts = conn.execute(
            sa.select(demo_crm.contact_attempts).order_by(
                demo_crm.contact_attempts.c.notice_id, demo_crm.contact_attempts.c.attempt_no
            )
        ).all()
        opted = {r.id for r in conn.execute(sa.select(demo_crm.customers)) if r.voice_opt_out}
    return notices, attempts, opted


def _attempts_of(engine: sa.Engine, customer_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(schema.call_attempts).where(schema.call_attempts.c.customer_id == customer_id)
        ).all()


def test_two_notices_of_a_customer_are_one_call_with_two_outcomes(
    db_engine, simulator, audio_url, composer
):
    _seed(db_engine)
    summary, items = _plan(db_engine, composer)
    rows = _rows(db_engine)
    assert summary.merged_calls == 1
    # One manifest item for the merged call, one for customer 2; none for notice 12.
    assert sorted(item["notice_id"] for item in items) == [11, 21]
    merged_text = "".join(
        s["text"] for item in items if item["notice_id"] == 11 for s in item["segments"]
    )
    assert merged_text.count("本通话语音由人工智能合成") == 1  # one AI disclosure
    assert merged_text.count("您好") == 1  # one greeting
    assert "还有一条来自示例人寿保险的通知" in merged_text and "确认续保请按二" in merged_text
    assert merged_text.count("如不希望再接到此类语音通知") == 1
    assert (rows[12].call_with, rows[12].confirm_key) == (rows[11].id, "2")
    assert rows[12].batch_key == rows[11].batch_key and rows[11].confirm_key == "1"

    gateway = SimulatorGateway(simulator.url)
    _synthesize_and_dial(db_engine, items, gateway, audio_url)
    rows = _rows(db_engine)
    placed = [call["idempotency_key"] for call in _calls(simulator)]
    assert sorted(placed) == sorted(dialer.idempotency_key(n, DAY, 1) for n in (11, 21))
    assert rows[12].state == "dialed" and rows[12].call_id == rows[11].call_id
    assert rows[12].audio_key == "audio/tone.wav"
    assert len(_attempts_of(db_engine, 1)) == 1  # the caps count one call

    _end_call(db_engine, 11, "completed", key="2")  # the second notice's confirm key
    _end_call(db_engine, 21, "completed")
    rows = _rows(db_engine)
    assert {n: (r.state, r.outcome) for n, r in rows.items()} == {
        11: ("completed", "completed"),
        12: ("completed", "confirmed"),
        21: ("completed", "completed"),
    }
    counts = _write_back(db_engine)
    assert counts["opt_outs"] == 0
    notices, attempts, opted = _crm(db_engine)
    assert (notices[11].status, notices[11].status_reason) == ("delivered", "completed")
    assert (notices[12].status, notices[12].status_reason) == ("delivered", "confirmed")
    by_notice = {a.notice_id: a for a in attempts}
    assert by_notice[12].call_id == by_notice[11].call_id == rows[11].call_id
    assert (by_notice[11].outcome, by_notice[12].outcome) == ("completed", "confirmed")
    assert opted == set()

    with db_engine.connect() as conn:
        report = load_report(conn, DAY)
        stored = conn.execute(
            sa.select(
                schema.notice_voice_audit.c.notice_id, schema.notice_voice_audit.c.telephone_bytes
            )
        ).all()
    assert report["merged_calls"] == {"calls": 1, "notices_carried": 1}
    assert report["calls"] == 2 and report["notices"] == 3
    assert report["by_outcome"] == {"completed": 2, "confirmed": 1}
    # The audio's bytes as the worker stored them, per notice that has audio of its own.
    assert {n: b for n, b in stored if b is not None} == {11: 8044, 21: 8044}
    assert report["capacity"]["inputs"]["telephone_bytes"] == 8044

    # The console: the second notice's page shows the call it rode in, with its own
    # outcome and contact attempt; the lead's page lists both notices on the call.
    with db_engine.connect() as conn:
        rider = queries.notice_page(conn, 12, DAY)
        lead = queries.notice_page(conn, 11, DAY)
    assert rider.merged_call == {"lead": 11, "riders": [12], "is_lead": False, "confirm_key": "2"}
    assert (
        [a["notices"] for a in rider.attempts]
        == [[11, 12]]
        == [a["notices"] for a in lead.attempts]
    )
    assert [(c["notice_id"], c["outcome"]) for c in rider.write_back["contact_attempts"]] == [
        (12, "confirmed")
    ]
    assert [c["notice_id"] for c in lead.write_back["contact_attempts"]] == [11]
    html = pages.notice("/console", rider)
    assert "spoken in" in html and 'href="/console/notices/11?date=' in html

    assert "telephone_bytes" in report["capacity"]["measured_inputs"]


def test_a_merged_call_is_redialled_as_one_call(db_engine, simulator, audio_url, composer):
    _seed(db_engine)
    _, items = _plan(db_engine, composer)
    gateway = SimulatorGateway(simulator.url)
    _synthesize_and_dial(db_engine, items, gateway, audio_url)
    _end_call(db_engine, 11, "busy")
    rows = _rows(db_engine)
    for notice in (11, 12):  # both wait for the redial, as one
        assert (rows[notice].state, rows[notice].attempt, rows[notice].reason_code) == (
            "synthesized",
            2,
            "busy",
        )
    _dial(db_engine, gateway, audio_url)
    rows = _rows(db_engine)
    keys = [call["idempotency_key"] for call in _calls(simulator)]
    assert keys.count(dialer.idempotency_key(11, DAY, 2)) == 1
    assert not any(key.startswith("vn-12-") for key in keys)  # never a call of its own
    assert rows[12].call_id == rows[11].call_id and rows[12].attempt == 2
    assert len(_attempts_of(db_engine, 1)) == 2  # two calls, each counted once

    _end_call(db_engine, 11, "completed", key="1")  # the first notice's confirm key
    rows = _rows(db_engine)
    assert (rows[11].outcome, rows[12].outcome) == ("confirmed", "completed")
    _write_back(db_engine)
    notices, attempts, _ = _crm(db_engine)
    assert [(a.notice_id, a.attempt_no, a.outcome) for a in attempts if a.notice_id != 21] == [
        (11, 1, "busy"),
        (11, 2, "confirmed"),
        (12, 1, "busy"),
        (12, 2, "completed"),
    ]
    assert (notices[12].status, notices[12].status_reason) == ("delivered", "completed")


def test_an_opt_out_on_a_merged_call_opts_the_customer_out_once(
    db_engine, simulator, audio_url, composer
):
    _seed(db_engine)
    _, items = _plan(db_engine, composer)
    _synthesize_and_dial(db_engine, items, SimulatorGateway(simulator.url), audio_url)
    _end_call(db_engine, 11, "completed", key="9")
    rows = _rows(db_engine)
    assert (rows[11].outcome, rows[12].outcome) == ("opted_out", "opted_out")
    counts = _write_back(db_engine)
    assert counts["opt_outs"] == 1  # one call, one opt-out
    notices, _, opted = _crm(db_engine)
    assert opted == {1}
    assert {notices[n].status_reason for n in (11, 12)} == {"opted_out"}
    assert _write_back(db_engine) == counts  # a re-run writes the same


def test_merging_is_off_unless_the_campaign_lists_the_pair(db_engine, composer):
    _seed(db_engine)
    summary, items = _plan(db_engine, composer, config=dataclasses.replace(CONFIG, merged_calls={}))
    assert summary.merged_calls == 0
    assert sorted(item["notice_id"] for item in items) == [11, 12, 21]
    assert {r.call_with for r in _rows(db_engine).values()} == {None}


def test_a_second_plan_keeps_the_merged_call(db_engine, composer):
    _seed(db_engine)
    first, items = _plan(db_engine, composer)
    rows = _rows(db_engine)
    again, items_again = _plan(db_engine, composer)
    assert items_again == items and again.batch_keys == first.batch_keys
    assert _rows(db_engine) == rows


def test_worker_processes_merge_the_calls_the_task_alone_merges(db_engine, composer):
    _seed(db_engine)
    by_workers, items = _plan(db_engine, composer, workers=2)
    rows = _rows(db_engine)
    alone, items_alone = _plan(db_engine, composer)  # a re-plan, in the task's process
    assert by_workers.merged_calls == 1
    assert items_alone == items and alone.batch_keys == by_workers.batch_keys
    assert _rows(db_engine) == rows


def test_a_second_notice_no_longer_due_is_left_out_and_the_call_goes_ahead(
    db_engine, simulator, audio_url, composer
):
    _seed(db_engine)
    _, items = _plan(db_engine, composer)
    with db_engine.begin() as conn:  # the policy was renewed after the plan
        conn.execute(
            demo_crm.notices.update().where(demo_crm.notices.c.id == 12).values(status="paid")
        )
    _synthesize_and_dial(db_engine, items, SimulatorGateway(simulator.url), audio_url)
    rows = _rows(db_engine)
    assert (rows[12].state, rows[12].reason_code) == ("skipped", "notice_no_longer_due")
    assert rows[11].state == "dialed"
    _end_call(db_engine, 11, "completed", key="2")
    rows = _rows(db_engine)
    assert (rows[11].outcome, rows[12].state, rows[12].outcome) == ("completed", "skipped", None)
    _write_back(db_engine)
    _, attempts, _ = _crm(db_engine)
    assert 12 not in {a.notice_id for a in attempts}


def test_the_campaign_file_names_only_pairs_of_the_campaigns_types():
    base = dataclasses.replace(CONFIG, merged_calls={})
    for bad in (
        {"nope": (PAIR,)},  # no such campaign
        {"all": (("repayment_reminder", "repayment_reminder"),)},  # not a pair
        {"banking": (PAIR,)},  # policy_renewal is not a banking notice type
    ):
        with pytest.raises(ValueError, match="merged_calls"):
            dataclasses.replace(base, merged_calls=bad)
    with pytest.raises(ValueError, match="second_confirm_key"):
        dataclasses.replace(base, second_confirm_key=base.optout_key)
    assert base.merge_pairs("all") == () and CONFIG.merge_pairs("all") == (PAIR,)


def test_a_chunk_never_splits_a_customers_notices():
    notices = [{"notice_id": n, "customer_id": c} for n, c in enumerate([1, 1, 2, 2, 2, 3, 4])]
    chunks = list(planner.chunked(notices, size=2))
    assert [[n["customer_id"] for n in chunk] for chunk in chunks] == [[1, 1], [2, 2, 2], [3, 4]]
