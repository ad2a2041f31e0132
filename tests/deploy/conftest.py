"""A deployed stack (``voice_notify_dev.stack``) for the operator-path tests.

The stack is the one ``make stack`` starts: PostgreSQL metadata DB and CRM, the
four Airflow services, CeleryExecutor with two workers, moto S3 and the gateway
simulator (``operator``) or, with ``make stack GATEWAY=sip``, the SIP call service
and a baresip test callee (``sip_operator``). The tests drive it only through the
REST API the Airflow UI uses and read the outcome where the product records it: the
simulator's or the callee's own call record (``calls.jsonl``), the dispatch ledger,
the SIP call book and the reports in S3.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import POSTGRES_ENV, REPO_ROOT

DAILY = "voice_notice_daily"
RECONCILE = "voice_notice_reconcile"
# Redials of busy and unanswered calls a minute after the call ended: long enough that
# a redial placed too early shows, short enough for the module's time budget.
REDIAL_AFTER_MINUTES = 1
# Low enough that each dial task takes seconds, so that tasks on the two workers overlap.
CALLS_PER_SECOND = 1.0
# The SIP stack's demo CRM: with 67 customers the `insurance` campaign has 10 notices
# due on any anchor date (the seed's offsets do not depend on it), whose numbers end
# in 1 (confirm), 9 (opt out), 0 (busy), 4 (no answer) and listen-to-the-end digits.
SIP_CUSTOMERS = 67
REDIS_ENV = "VOICE_NOTIFY_TEST_REDIS_URL"
_KEY = re.compile(r"^vn-(?P<notice>\d+)-(?P<date>\d{4}-\d{2}-\d{2})-(?P<attempt>\d+)$")

#: One line per operator path, printed at the end of the session (and kept as JSON).
PATH_RECORDS: list[dict[str, Any]] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if not PATH_RECORDS:
        return
    terminalreporter.section("operator paths on the deployed stack")
    for record in PATH_RECORDS:
        terminalreporter.write_line(json.dumps(record, sort_keys=False))


def _test_campaigns(state_dir: Path) -> Path:
    """The demo's campaign file (any hour, no per-minute cap) with timed redials."""
    config = yaml.safe_load((REPO_ROOT / "include" / "demo" / "campaigns.yaml").read_text())
    for notice_type in config["notice_types"].values():
        if notice_type.get("redial", {}).get("outcomes"):
            notice_type["redial"]["after_minutes"] = REDIAL_AFTER_MINUTES
    path = state_dir / "campaigns.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def _sip_campaigns(state_dir: Path) -> Path:
    """The demo's campaign file (any hour) with no redials: one real call per notice."""
    config = yaml.safe_load((REPO_ROOT / "include" / "demo" / "campaigns.yaml").read_text())
    for notice_type in config["notice_types"].values():
        notice_type["redial"] = {"outcomes": [], "max_attempts": 1}
    path = state_dir / "campaigns.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def _parse_time(value: Any) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


@dataclass
class Call:
    """One call the simulator accepted (its own record)."""

    key: str
    notice_id: int
    campaign_date: dt.date
    attempt: int
    accepted_at: dt.datetime

    @classmethod
    def from_line(cls, line: dict) -> Call:
        match = _KEY.match(line["idempotency_key"])
        assert match, line["idempotency_key"]
        return cls(
            key=line["idempotency_key"],
            notice_id=int(match["notice"]),
            campaign_date=dt.date.fromisoformat(match["date"]),
            attempt=int(match["attempt"]),
            accepted_at=_parse_time(line["accepted_at"]),
        )


@dataclass
class Operator:
    """What an operator does in the UI, through the same REST API, and what they look at."""

    state: Any  # voice_notify_dev.stack.StackState
    api: Any
    crm: sa.Engine
    metadata: sa.Engine
    campaigns_file: Path
    day: dt.date
    shared: dict[str, Any] = field(default_factory=dict)

    # --- actions ---------------------------------------------------------------

    def unpause(self, dag_id: str) -> None:
        self.api.patch(f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, logical: dt.datetime, conf: dict | None = None) -> str:
        run_id = f"manual__{logical.isoformat()}__{uuid.uuid4().hex[:6]}"
        body = {"dag_run_id": run_id, "logical_date": logical.isoformat(), "conf": conf or {}}
        return self.api.post(f"/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def clear_task(self, run_id: str, task_id: str, map_index: int, downstream: bool) -> list:
        body = {
            "dag_run_id": run_id,
            "task_ids": [[task_id, map_index]],
            "include_downstream": downstream,
            "include_upstream": False,
            "only_failed": False,
            "reset_dag_runs": True,
            "dry_run": False,
        }
        cleared = self.api.post(f"/dags/{DAILY}/clearTaskInstances", body)
        return [(t["task_id"], t["map_index"]) for t in cleared["task_instances"]]

    def clear_run(self, run_id: str) -> int:
        body = {"dry_run": False, "only_failed": False}
        cleared = self.api.post(f"/dags/{DAILY}/dagRuns/{run_id}/clear", body)
        return int(cleared.get("total_entries", len(cleared.get("task_instances", []))))

    def backfill(self, first: dt.date, last: dt.date, reprocess: str) -> int:
        body = {
            "dag_id": DAILY,
            "from_date": f"{first.isoformat()}T00:00:00Z",
            "to_date": f"{last.isoformat()}T23:59:59Z",
            "reprocess_behavior": reprocess,
            # One run at a time, in date order (the backfill's own setting wins over the
            # DAG's max_active_runs, so an operator passes it: README, Operations).
            "max_active_runs": 1,
        }
        return int(self.api.post("/backfills", body)["id"])

    # --- waiting ---------------------------------------------------------------

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run["state"]
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} did not finish within {timeout_s} s")

    def wait_backfill(self, backfill_id: int, timeout_s: float = 420) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            backfill = self.api.get(f"/backfills/{backfill_id}")
            runs = self.backfill_runs(backfill_id)
            if backfill["completed_at"] and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(2)
        raise AssertionError(f"backfill {backfill_id} did not finish within {timeout_s} s")

    def backfill_runs(self, backfill_id: int) -> list[dict]:
        with self.metadata.connect() as conn:
            ids = conn.execute(
                sa.text("SELECT run_id FROM dag_run WHERE backfill_id = :b ORDER BY logical_date"),
                {"b": backfill_id},
            ).scalars()
            return [self.api.get(f"/dags/{DAILY}/dagRuns/{run_id}") for run_id in ids]

    def reconcile_pass(self) -> tuple[str, dt.datetime]:
        """One run of voice_notice_reconcile now, as its hourly schedule would start it;
        returns its state and when it was triggered."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return self.wait_run(RECONCILE, self.trigger(RECONCILE, now)), now

    def dialing_tasks(self, since: dt.datetime) -> list[tuple[str, str, dt.datetime, dt.datetime]]:
        """(dag, task, start, end) of every dial and redial task instance since then."""
        with self.metadata.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT dag_id, task_id, start_date, end_date FROM task_instance "
                    "WHERE task_id IN ('batch.dial', 'redial') AND start_date >= :since "
                    "UNION ALL SELECT dag_id, task_id, start_date, end_date "
                    "FROM task_instance_history "
                    "WHERE task_id IN ('batch.dial', 'redial') AND start_date >= :since"
                ),
                {"since": since},
            ).all()
        return [
            (r.dag_id, r.task_id, _parse_time(r.start_date), _parse_time(r.end_date or since))
            for r in rows
            if r.start_date is not None
        ]

    # --- what an operator looks at ---------------------------------------------

    def calls(self) -> list[Call]:
        path = Path(self.state.gateway_state) / "calls.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Call.from_line(json.loads(line)) for line in lines if line.strip()]

    def callee_calls(self) -> list[dict[str, Any]]:
        """The SIP test callee's record of the calls it received (``--gateway sip``)."""
        path = Path(self.state.callee_state) / "calls.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def sip_calls(self) -> list[sa.Row]:
        """The SIP call service's call book (in the ledger database)."""
        from voice_notify.db import schema

        with self.crm.connect() as conn:
            return conn.execute(sa.select(schema.sip_calls)).all()

    def attempts(self) -> list[sa.Row]:
        from voice_notify.db import schema

        with self.crm.connect() as conn:
            return conn.execute(
                sa.select(
                    schema.call_attempts,
                    schema.dispatch_ledger.c.notice_type,
                ).join(
                    schema.dispatch_ledger,
                    schema.dispatch_ledger.c.id == schema.call_attempts.c.ledger_id,
                )
            ).all()

    def ledger_rows(self, dates: Iterable[dt.date]) -> list[sa.Row]:
        from voice_notify import ledger

        with self.crm.connect() as conn:
            return [row for day in dates for row in ledger.rows_for_date(conn, day)]

    def report(self, day: dt.date) -> dict | None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.state.s3_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        try:
            body = client.get_object(Bucket=self.state.bucket, Key=f"reports/{day}/report.json")
        except client.exceptions.NoSuchKey:
            return None
        return json.loads(body["Body"].read())

    def task_instances(self, run_id: str, task_id: str) -> list[sa.Row]:
        with self.metadata.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT map_index, state, start_date, end_date, external_executor_id "
                    "FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t "
                    "ORDER BY map_index"
                ),
                {"d": DAILY, "r": run_id, "t": task_id},
            ).all()

    def run_shape(self, run_id: str) -> dict[str, Any]:
        """What the run's plan returned (batch count) and its mapped instances' states."""
        try:
            entry = self.api.get(
                f"/dags/{DAILY}/dagRuns/{run_id}/taskInstances/plan/xcomEntries/return_value"
            )
            value = entry.get("value")
            batches = len(json.loads(value) if isinstance(value, str) else value or [])
        except RuntimeError:
            batches = None
        with self.metadata.connect() as conn:
            states = conn.execute(
                sa.text(
                    "SELECT task_id, state, count(*) AS n FROM task_instance "
                    "WHERE dag_id = :d AND run_id = :r "
                    "AND task_id IN ('batch.synthesize', 'batch.dial') "
                    "GROUP BY task_id, state ORDER BY task_id, state"
                ),
                {"d": DAILY, "r": run_id},
            ).all()
        return {
            "plan_batches": batches,
            "mapped": {f"{r.task_id}:{r.state}": r.n for r in states},
        }

    def worker_of(self) -> dict[str, str]:
        """Celery task id -> the worker that received it (from the workers' own logs)."""
        received = re.compile(r"Task execute_workload\[([0-9a-f-]+)\] received")
        owners = {}
        for service in self.state.services:
            if service.name.startswith("worker"):
                for line in Path(service.log).read_text(errors="replace").splitlines():
                    if match := received.search(line):
                        owners[match[1]] = service.name
        return owners


# --- checks ------------------------------------------------------------------------


def duplicate_calls(calls: list[Call], attempts: list[sa.Row]) -> dict[str, int]:
    """How often a (notice, attempt) was called more than once, by each record."""
    simulator = Counter((c.notice_id, c.attempt) for c in calls)
    ledger = Counter((a.notice_id, a.attempt) for a in attempts)
    dates = {}
    for call in calls:
        dates.setdefault(call.notice_id, set()).add(call.campaign_date)
    return {
        "simulator": sum(n - 1 for n in simulator.values() if n > 1),
        "ledger": sum(n - 1 for n in ledger.values() if n > 1),
        "notices_called_from_two_dates": sum(1 for d in dates.values() if len(d) > 1),
    }


def redial_violations(calls: list[Call], attempts: list[sa.Row], campaigns_file: Path) -> list:
    """Calls the redial policy did not allow: too many attempts, a redial of an outcome
    that is not redialled, or a redial placed before ``after_minutes`` had passed."""
    from voice_notify.plan.campaigns import load_campaign_config

    config = load_campaign_config(campaigns_file)
    accepted = {c.key: c.accepted_at for c in calls}
    by_notice_date: dict[tuple[int, dt.date], list[sa.Row]] = {}
    for attempt in attempts:
        by_notice_date.setdefault((attempt.notice_id, attempt.campaign_date), []).append(attempt)
    problems = []
    for (notice_id, day), rows in by_notice_date.items():
        rows.sort(key=lambda r: r.attempt)
        policy = config.notice_types[rows[0].notice_type].redial
        if rows[-1].attempt > policy.max_attempts:
            problems.append((notice_id, str(day), "attempts", rows[-1].attempt))
        for previous, current in itertools.pairwise(rows):
            if previous.outcome not in policy.on:
                problems.append((notice_id, str(day), "redial_of", previous.outcome))
                continue
            if previous.ended_at is None:
                problems.append((notice_id, str(day), "redial_before_end", current.attempt))
                continue
            earliest = _parse_time(previous.ended_at) + dt.timedelta(minutes=policy.after_minutes)
            placed = accepted.get(current.idempotency_key) or _parse_time(
                current.dialing_started_at
            )
            if placed < earliest - dt.timedelta(seconds=1):
                early = round((earliest - placed).total_seconds(), 1)
                problems.append((notice_id, str(day), "early_s", early))
    return problems


def unsettled(rows: list[sa.Row], now: dt.datetime) -> tuple[list, int]:
    """Rows not in a terminal state, besides those waiting for a redial not yet due at
    ``now`` (when the reconcile pass started: a redial due later is the next pass's)."""
    from voice_notify.ledger import LedgerState

    open_rows, waiting = [], 0
    for row in rows:
        if LedgerState(row.state).terminal:
            continue
        due = row.next_attempt_at
        if row.state == "synthesized" and row.attempt > 1 and due and _parse_time(due) > now:
            waiting += 1
            continue
        open_rows.append((row.notice_id, str(row.campaign_date), row.state, row.attempt))
    return open_rows, waiting


def report_drift(before: dict | None, after: dict | None, changed: set[int]) -> list:
    """Report items that differ although their notice's ledger row did not change."""
    if before is None or after is None:
        return [] if before == after else ["report missing"]
    old = {i["notice_id"]: i for i in before["items"]}
    new = {i["notice_id"]: i for i in after["items"]}
    drift = [n for n in old.keys() | new.keys() if n not in changed and old.get(n) != new.get(n)]
    return sorted(drift)


def _running(call: Call, tasks: list[tuple]) -> str:
    names = {f"{dag}.{task}" for dag, task, start, end in tasks if start <= call.accepted_at <= end}
    return " or ".join(sorted(names)) or "no dial task running"


def placed_by(calls: list[Call], tasks: list[tuple]) -> dict[str, int]:
    """Which task instance was running when each call was accepted: the daily ``dial``
    or the reconcile DAG's ``redial`` (both, or neither, said as such)."""
    return dict(Counter(_running(call, tasks) for call in calls))


def redials_by_daily_dial(calls: list[Call], tasks: list[tuple]) -> list[str]:
    """Redials (attempt > 1) accepted while only a daily ``dial`` was running: a cleared
    or re-run daily dial redialling, which is voice_notice_reconcile's job."""
    return [
        call.key
        for call in calls
        if call.attempt > 1 and _running(call, tasks) == "voice_notice_daily.dial"
    ]


def ledger_snapshot(rows: list[sa.Row]) -> dict[int, tuple]:
    return {
        r.notice_id: (r.state, r.attempt, r.outcome, r.reason_code, r.audio_key, r.call_id)
        for r in rows
    }


# --- the stack ---------------------------------------------------------------------


@contextlib.contextmanager
def _deployed_stack(
    tmp_path_factory: pytest.TempPathFactory,
    campaigns_of: Any,
    *,
    customers: int,
    gateway: str,
    extra_env: dict[str, str],
) -> Iterator[Operator]:
    """A stack of its own (databases ``vn_deploy_<hex>_*``, its own Celery queue)."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set; CI sets it (see .ci/run)")
    from voice_notify_dev import stack

    state_dir = tmp_path_factory.mktemp("stack")
    day = dt.datetime.now(dt.UTC).date()
    campaigns = campaigns_of(state_dir)
    config = stack.StackConfig(
        state_dir=state_dir,
        name=f"vn_deploy_{uuid.uuid4().hex[:8]}",
        postgres_url=server,
        redis_url=os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/5"),
        anchor_date=day,
        customers=customers,
        call_seconds=0.3,
        gateway=gateway,
        # The standard voice only: cloned voices are the synthesis tests' subject, and
        # their similarity check costs each synthesis task seconds.
        enroll_voices=False,
        extra_env={
            # Only the runs the tests start: no scheduled run may take the notices first
            # (the DAGs keep their schedules, which backfills need).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
            "VOICE_NOTIFY_CAMPAIGNS_FILE": str(campaigns),
            "VOICE_NOTIFY_POLL_INTERVAL_S": "1",
            "VOICE_NOTIFY_RETRY_DELAY_S": "2",
            "VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS": "4",
            **extra_env,
        },
    )
    started = time.monotonic()
    try:
        state = stack.up(config)
    except BaseException:
        stack.drop_databases(state_dir)
        raise
    PATH_RECORDS.append(
        {"path": f"stack start ({gateway})", "seconds": round(time.monotonic() - started, 1)}
    )
    crm = sa.create_engine(state.crm_url)
    metadata = sa.create_engine(state.metadata_url)
    try:
        yield Operator(state, state.api(), crm, metadata, campaigns, day)
    finally:
        crm.dispose()
        metadata.dispose()
        stack.down(state_dir)
        stack.drop_databases(state_dir)
        (state_dir / "records.json").write_text(json.dumps(PATH_RECORDS, indent=2))


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """A stack with the gateway simulator; 50 customers, timed redials."""
    with _deployed_stack(
        tmp_path_factory,
        _test_campaigns,
        customers=50,
        gateway="simulator",
        extra_env={
            "VOICE_NOTIFY_CALLS_PER_SECOND": str(CALLS_PER_SECOND),
            "VOICE_NOTIFY_CALL_TIMEOUT_S": "30",
        },
    ) as operator:
        yield operator


@pytest.fixture(scope="module")
def sip_operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """A stack with the SIP call service and the baresip test callee (``make stack
    GATEWAY=sip``); real calls, as long as their audio, and no redials."""
    with _deployed_stack(
        tmp_path_factory,
        _sip_campaigns,
        customers=SIP_CUSTOMERS,
        gateway="sip",
        extra_env={
            "VOICE_NOTIFY_CALLS_PER_SECOND": "2",
            # wait_for_calls waits for calls that last 15-25 s, queued on 16 lines.
            "VOICE_NOTIFY_CALL_TIMEOUT_S": "300",
        },
    ) as operator:
        yield operator
