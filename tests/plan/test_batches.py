"""Batches of any campaign size: their size, their stability across runs of the plan, and
the plan in chunks on every ledger database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from synthesis.manifest import MANIFEST_VERSION, BatchItem, VoiceSpec
from synthesis.text import NoticeComposer
from tests.support.crm_rows import due_notice
from voice_notify import ledger
from voice_notify.db import migrate, schema
from voice_notify.ledger import LedgerState
from voice_notify.plan import planner
from voice_notify.plan.batches import BatchSizeError, choose_batch_size
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.reasons import Reason

INCLUDE = Path(__file__).resolve().parents[2] / "include"
DAY = dt.date(2026, 11, 26)
LIMIT = 1024


# --- the size of a batch ---------------------------------------------------------------


def test_a_normal_campaign_gets_the_requested_size() -> None:
    assert choose_batch_size(600, 50, 4, LIMIT) == 50
    assert choose_batch_size(10_000, 50, 4, LIMIT) == 50


def test_a_small_campaign_fills_the_synthesis_slots() -> None:
    assert choose_batch_size(200, 50, 8, LIMIT) == 25  # 8 batches, not 4
    assert choose_batch_size(40, 50, 8, LIMIT) == 10  # no batch under MIN_SPREAD_BATCH
    assert choose_batch_size(3, 50, 8, LIMIT) == 10
    assert choose_batch_size(200, 5, 8, LIMIT) == 5  # a small requested size stays


def test_a_large_campaign_gets_a_few_hundred_batches() -> None:
    size = choose_batch_size(100_000, 50, 4, LIMIT)
    batches = math.ceil(100_000 / size)
    assert 100 <= batches <= LIMIT // 2
    assert size == 196


@pytest.mark.parametrize("requested", [1, 7, 50, 500, 5000])
@pytest.mark.parametrize("slots", [1, 4, 16])
@pytest.mark.parametrize("existing", [0, 300, 1000])
def test_never_more_batches_than_airflow_maps_and_every_item_covered(
    requested, slots, existing
) -> None:
    previous = 0
    for planned in [*range(0, 3000, 7), 10_000, 99_999, 100_000, 250_000, 1_000_000]:
        try:
            size = choose_batch_size(
                planned, requested, slots, LIMIT, existing_batches=existing, max_batch_size=2000
            )
        except BatchSizeError as exc:
            # Only when even the largest batch would not fit: the message names the settings.
            assert math.ceil(planned / 2000) > LIMIT - existing
            assert "max_map_length" in str(exc) or "VOICE_NOTIFY_MAX_BATCH_SIZE" in str(exc)
            continue
        assert 1 <= size <= 2000
        batches = math.ceil(planned / size)
        assert existing + batches <= LIMIT  # within max_map_length
        assert batches * size >= planned  # every item in a batch
        assert size >= previous  # monotone in the campaign size
        previous = size


def test_impossible_settings_name_the_setting() -> None:
    with pytest.raises(BatchSizeError, match="VOICE_NOTIFY_MAX_BATCH_SIZE"):
        choose_batch_size(100_000, 50, 4, 64, max_batch_size=500)
    with pytest.raises(BatchSizeError, match=r"\[core\] max_map_length"):
        choose_batch_size(10, 50, 4, 64, existing_batches=64)


# --- manifests -------------------------------------------------------------------------


def test_a_manifest_line_is_the_same_as_before() -> None:
    item = BatchItem(
        ledger_id=7,
        notice_id=42,
        campaign_date="2026-11-26",
        notice_type="repayment_reminder",
        locale="cmn",
        segments=[{"text": "您好，曾小明", "lang": "cmn"}, {"text": "三千", "pause_ms": 200}],
        voice=VoiceSpec("agent-a", "guangdong", "warm"),
        seed=123,
    )
    expected = json.dumps({"v": MANIFEST_VERSION, **asdict(item)}, ensure_ascii=False)
    assert item.to_json() == expected
    assert BatchItem.from_json(item.to_json()) == item
    plain = BatchItem(1, 2, "2026-11-26", "x", "en", [])
    assert plain.to_json() == json.dumps({"v": MANIFEST_VERSION, **asdict(plain)})


def test_a_line_made_ahead_in_a_worker_is_the_line_made_from_the_ledger_row() -> None:
    from collections import namedtuple

    from voice_notify.plan import batches, trail
    from voice_notify.plan.eligibility import Decision, segments_of

    config, at = load_campaign_config(INCLUDE / "campaigns.yaml"), dt.datetime(2026, 11, 26, 8)

    row = namedtuple("Row", "id notice_id notice_type locale")
    decisions = {
        n: Decision(
            n,
            n + 100,
            "repayment_reminder",
            "cmn",
            None,
            ({"text": f'您好 "{n}" \\ 曾', "lang": "cmn", "overrides": [[0, 1, "zēng"]]},),
            voice=VoiceSpec("agent-a", None, "warm" if n % 2 else None),
        )
        for n in (5, 6, 7)
    }
    ahead = {
        n: dataclasses.replace(d, item_tail=batches.item_tail(d, DAY)) for n, d in decisions.items()
    }
    assert all(d.item_tail for d in ahead.values())
    rows = [row(70, 7, "repayment_reminder", "cmn"), row(50, 5, "repayment_reminder", "cmn")]
    # A row an earlier plan made in another locale: its line is made from the row.
    rows.append(row(60, 6, "repayment_reminder", "yue"))
    expected = [
        (i.ledger_id, i.notice_id, i.to_json()) for i in batches.batch_items(rows, decisions, DAY)
    ]
    assert batches.item_lines(rows, ahead, DAY) == expected
    assert batches.item_lines(rows, decisions, DAY) == expected
    # As a plan's worker hands them back: the segments only in the line made ahead.
    shed = {n: dataclasses.replace(d, segments=()) for n, d in ahead.items()}
    assert batches.item_lines(rows, shed, DAY) == expected
    for n, d in shed.items():
        assert segments_of(d) == decisions[n].segments
        claimed = trail.plan_evaluation(d, DAY, config, claimed_elsewhere=True, decided_at=at)
        assert claimed == trail.plan_evaluation(
            decisions[n], DAY, config, claimed_elsewhere=True, decided_at=at
        )
        assert "1 segments, locale cmn" in json.dumps([c.detail for c in claimed.checks])
    assert [json.loads(line)["ledger_id"] for _, _, line in expected] == [50, 60, 70]
    assert json.loads(expected[1][2])["locale"] == "yue"


# --- the plan in chunks, run twice -----------------------------------------------------


@pytest.fixture(scope="module")
def composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE)


@pytest.fixture(scope="module")
def config():
    return load_campaign_config(INCLUDE / "campaigns.yaml")


def _notice(notice_id: int, **overrides) -> dict:
    fields = {
        # Two notices per customer, far apart in notice order (different chunks).
        "customer_id": 1000 + notice_id % 40,
        "voice_opt_out": notice_id % 9 == 0,
        "birth_year": 1950 if notice_id % 2 else 1990,
    }
    return due_notice(notice_id, DAY, **{**fields, **overrides})


class Manifests(dict):
    def write(self, key: str, body: bytes) -> str:
        self[key] = body
        return key

    def lines(self, key: str) -> list[dict]:
        return [json.loads(line) for line in self[key].decode().splitlines()]


def _plan(
    engine,
    notices,
    composer,
    config,
    manifests,
    *,
    batch_size=8,
    slots=2,
    limit=LIMIT,
    campaign="all",
    workers=1,
):
    with engine.connect() as conn:
        return planner.plan_date(
            conn,
            iter(notices),
            DAY,
            ("repayment_reminder",),
            composer,
            config,
            planner.BatchLimits(batch_size, slots, limit, 2000),
            batch_key=lambda i: f"campaigns/{DAY}/{campaign}/batches/batch-{i:04d}.jsonl",
            write_manifest=manifests.write,
            workers=workers,
        )


def _membership(engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return {r.notice_id: r.batch_key for r in ledger.rows_for_date(conn, DAY)}


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "CHUNK", 7)


def test_a_second_plan_returns_the_same_batches_with_the_same_members(
    db_engine, composer, config, small_chunks
) -> None:
    migrate.upgrade(db_engine)
    notices = [_notice(i) for i in range(1, 61)]
    manifests = Manifests()
    first = _plan(db_engine, notices, composer, config, manifests)
    members = _membership(db_engine)
    written = dict(manifests)

    assert first.decisions == 60
    assert first.waiting == 60 - 6  # every ninth customer opted out
    assert first.reasons == {Reason.OPTED_OUT: 6}
    assert first.batch_keys == [
        f"campaigns/{DAY}/all/batches/batch-{i:04d}.jsonl" for i in range(7)
    ]
    assert sorted(manifests) == first.batch_keys
    in_manifests = [line["notice_id"] for key in first.batch_keys for line in manifests.lines(key)]
    assert in_manifests == [i for i in range(1, 61) if i % 9]  # all of them, in notice order
    assert {members[i] for i in range(9, 61, 9)} == {None}  # skipped rows have no batch

    again = _plan(db_engine, notices, composer, config, manifests)
    assert again.batch_keys == first.batch_keys
    assert again.new_batches == 0
    assert _membership(db_engine) == members
    assert dict(manifests) == written  # byte for byte


def test_a_rerun_keeps_batches_and_puts_new_notices_into_new_ones(
    db_engine, composer, config, small_chunks
) -> None:
    migrate.upgrade(db_engine)
    manifests = Manifests()
    first = _plan(
        db_engine, [_notice(i) for i in range(1, 31) if i % 9], composer, config, manifests
    )
    members = _membership(db_engine)
    key0 = first.batch_keys[0]
    with db_engine.begin() as conn:
        done = ledger.rows_for_date(conn, DAY, batch_key=key0)[0]
        ledger.transition(conn, done.id, LedgerState.SYNTHESIZED, audio_key="a")
    # Notice 2's customer opted out since; notices 31-40 became due.
    notices = [_notice(i) for i in range(1, 41) if i % 9]
    notices[1] = _notice(2, voice_opt_out=True)
    again = _plan(db_engine, notices, composer, config, manifests)

    assert again.batch_keys[: len(first.batch_keys)] == first.batch_keys
    assert again.new_batches == len(again.batch_keys) - len(first.batch_keys) >= 1
    now = _membership(db_engine)
    assert all(now[n] == key for n, key in members.items() if key is not None)
    assert {now[n] for n in range(31, 41) if n % 9} <= set(
        again.batch_keys[len(first.batch_keys) :]
    )
    with db_engine.connect() as conn:
        states = {r.notice_id: (r.state, r.reason_code) for r in ledger.rows_for_date(conn, DAY)}
    assert states[done.notice_id] == ("synthesized", None)
    assert states[2] == ("skipped", Reason.OPTED_OUT)
    # A batch's manifest holds what still waits: not the synthesized row, not the skipped one.
    waiting_in_0 = [line["notice_id"] for line in manifests.lines(key0)]
    assert done.notice_id not in waiting_in_0 and 2 not in waiting_in_0
    assert waiting_in_0 and all(now[n] == key0 for n in waiting_in_0)
    # The third run changes nothing.
    assert _plan(db_engine, notices, composer, config, manifests).batch_keys == again.batch_keys


def test_a_notice_gone_from_the_extract_of_a_rerun_is_skipped_as_no_longer_due(
    db_engine, composer, config, small_chunks
) -> None:
    from voice_notify.plan import trail

    migrate.upgrade(db_engine)
    manifests = Manifests()
    notices = [_notice(i) for i in range(1, 31) if i % 9]
    first = _plan(db_engine, notices, composer, config, manifests)
    members = _membership(db_engine)
    with db_engine.begin() as conn:  # another campaign's type on the date: not this plan's
        ledger.record_plan(
            conn,
            [{"notice_id": 900, "campaign_date": DAY, "state": LedgerState.PLANNED,
              "notice_type": "policy_renewal", "locale": "cmn"}],
        )  # fmt: skip
        synthesized = ledger.rows_for_date(conn, DAY, batch_key=first.batch_keys[0])[0]
        ledger.transition(conn, synthesized.id, LedgerState.SYNTHESIZED, audio_key="a")
    # Paid since: 5 and 20 are no longer due, nor is the synthesized one (left to dial).
    gone = {5, 20, synthesized.notice_id}
    again = _plan(
        db_engine, [n for n in notices if n["notice_id"] not in gone], composer, config, manifests
    )

    assert again.reasons == {Reason.NOTICE_NO_LONGER_DUE: 2}
    assert again.batch_keys == first.batch_keys
    with db_engine.connect() as conn:
        states = {r.notice_id: (r.state, r.reason_code) for r in ledger.rows_for_date(conn, DAY)}
        last = trail.trail_of(conn, 20, DAY)[-1]
    assert states[5] == states[20] == ("skipped", Reason.NOTICE_NO_LONGER_DUE)
    assert states[synthesized.notice_id] == ("synthesized", None)
    assert states[900] == ("planned", None)
    assert (last.result, last.reason_code) == ("skip", Reason.NOTICE_NO_LONGER_DUE)
    assert [(c.check, c.result) for c in last.checks][:2] == [
        ("still_due", "skip"),
        ("fields", "not_reached"),
    ]
    in_manifests = {line["notice_id"] for key in again.batch_keys for line in manifests.lines(key)}
    assert in_manifests == {n for n, key in members.items() if key} - gone
    # A run with three of them left skips every other row still planned, and only those.
    kept = {n["notice_id"] for n in notices[:3]}
    still_planned = {n["notice_id"] for n in notices} - gone - kept
    third = _plan(db_engine, notices[:3], composer, config, manifests)
    assert third.reasons == {Reason.NOTICE_NO_LONGER_DUE: len(still_planned)}


def test_the_plan_writes_trail_audit_and_ledger_for_every_chunk(
    db_engine, composer, config, small_chunks
) -> None:
    migrate.upgrade(db_engine)
    summary = _plan(db_engine, [_notice(i) for i in range(1, 31)], composer, config, Manifests())
    with db_engine.connect() as conn:
        count = lambda t: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()  # noqa: E731
        assert count(schema.dispatch_ledger) == 30
        assert count(schema.notice_decisions) == 30
        assert count(schema.notice_voice_audit) == summary.waiting == 27
        batched = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.dispatch_ledger)
            .where(schema.dispatch_ledger.c.batch_key.is_not(None))
        ).scalar_one()
    assert batched == 27


def test_a_campaign_too_big_for_the_mapped_tasks_fails_before_any_batch(
    tmp_path, composer, config, small_chunks
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    with pytest.raises(BatchSizeError, match="max_map_length"):
        _plan(engine, [_notice(i) for i in range(1, 30)], composer, config, Manifests(), limit=0)
    assert set(_membership(engine).values()) == {None}


def test_a_campaign_lists_only_its_own_batches(tmp_path, composer, config) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    other = _plan(
        engine, [_notice(i) for i in range(1, 11)], composer, config, Manifests(), campaign="myyx"
    )
    # "_" is a LIKE wildcard: my_x must not pick up myyx's batches.
    mine = _plan(
        engine, [_notice(i) for i in range(11, 21)], composer, config, Manifests(), campaign="my_x"
    )
    assert other.batch_keys and mine.batch_keys
    assert all("/my_x/" in key for key in mine.batch_keys)
    # Nor take myyx's rows for its own: they are not in its plan, but not gone either.
    assert Reason.NOTICE_NO_LONGER_DUE not in mine.reasons


def _written(engine) -> dict[str, list[tuple]]:
    """What a plan leaves in the ledger database, without ids and times."""
    tables = {
        schema.dispatch_ledger: ("notice_id", "state", "reason_code", "locale", "batch_key"),
        schema.notice_decisions: ("notice_id", "verdict", "result", "reason_code", "checks"),
        schema.notice_voice_audit: ("notice_id", "voice_profile", "consent_id", "emotion"),
    }
    with engine.connect() as conn:
        return {
            table.name: sorted(map(tuple, conn.execute(sa.select(*(table.c[c] for c in cols)))))
            for table, cols in tables.items()
        }


def test_worker_processes_plan_what_the_task_alone_plans(
    tmp_path, db_url, composer, config, small_chunks, caplog
) -> None:
    from voice_notify.db.sql import make_engine

    notices = [_notice(i) for i in range(1, 61)]
    notices[4] = {**notices[4], "phone": "not a number"}
    notices[6] = {**notices[6], "notice_id": "x7"}  # no usable id: logged, left out
    results = {}
    for workers in (1, 2):
        # The task alone on each ledger database, the workers on SQLite: what the workers
        # hand back is the same whatever the database, and so is what ends up in it.
        if workers == 1:
            engine = make_engine(db_url)
        else:
            engine = sa.create_engine(f"sqlite:///{tmp_path / 'workers.sqlite'}")
        migrate.upgrade(engine)
        manifests = Manifests()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="voice_notify"):
            # The workers get the extract's JSON lines, unparsed, as the task hands them.
            given = notices if workers == 1 else [json.dumps(n).encode() for n in notices]
            summary = _plan(engine, given, composer, config, manifests, workers=workers)
        results[workers] = (
            summary.batch_keys,
            summary.reasons,
            dict(manifests),
            _written(engine),
            [r.getMessage() for r in caplog.records if "invalid_notice_id" in r.getMessage()],
        )
        engine.dispose()
    assert results[2] == results[1]
    assert results[1][1] == {Reason.OPTED_OUT: 6, Reason.INVALID_PHONE: 1}
    assert len(results[2][4]) == 1  # the worker's warning, emitted by the task's process


def test_a_process_that_may_not_fork_decides_its_chunks_itself(monkeypatch) -> None:
    """A daemonic process (a worker pool's own) may not have children: the plan decides in
    its own process, in order, and says so."""
    import types

    monkeypatch.setattr(
        planner.multiprocessing, "current_process", lambda: types.SimpleNamespace(daemon=True)
    )
    seen = []

    def decide(chunk):
        seen.append(os.getpid())
        return [n * 2 for n in chunk], []

    chunks = [[1, 2], [3], [4, 5]]
    decided = list(planner._decided(iter(chunks), decide, 2, planner.PlanSummary()))
    assert decided == [([2, 4], []), ([6], []), ([8, 10], [])]
    assert set(seen) == {os.getpid()}
