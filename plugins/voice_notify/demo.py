"""``make demo``: today's campaign on the embedded default, end to end.

Seeds the demo CRM (SQLite at ``.demo/crm.sqlite``) unless it exists, starts
a local S3 endpoint and the gateway simulator (state in ``.demo/gateway/``),
runs ``airflow dags test voice_notice_daily <date>`` on an embedded SQLite
metadata database, copies the campaign's audio and report to
``.demo/output/<date>/``, prints a summary and stops what it started. A second
run for the same date places no new calls: the ledger lives in the CRM file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from voice_notify import demo_crm, localrun

DAG_ID = "voice_notice_daily"
RECONCILE_DAG_ID = "voice_notice_reconcile"


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open(encoding="utf-8")) if path.exists() else 0


def _copy_outputs(s3_url: str, bucket: str, report_key: str, out_dir: Path) -> dict:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    report = json.loads(client.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    copied = 0
    for item in report["items"]:
        if not item["audio_key"]:
            continue
        target = out_dir / "audio" / f"notice-{item['notice_id']}-{item['notice_type']}.wav"
        if target.exists():
            continue
        try:
            body = client.get_object(Bucket=bucket, Key=item["audio_key"])["Body"].read()
        except client.exceptions.NoSuchKey:
            continue  # made by an earlier demo run; its copy is already in out_dir
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        copied += 1
    return {"report": report, "copied": copied}


def run(state_dir: Path, campaign_date: dt.date, seed: int) -> int:
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    crm_path = state_dir / "crm.sqlite"
    crm_url = f"sqlite:///{crm_path}"
    seeded = demo_crm.seed(sa.create_engine(crm_url), demo_crm.SeedSpec(anchor_date=campaign_date))
    print(
        f"demo CRM: {crm_path} ({'seeded' if seeded['seeded'] else 'existing'}, "
        f"{seeded['customers']} customers)"
    )
    calls_log = state_dir / "gateway" / "calls.jsonl"
    calls_before = _count_lines(calls_log)
    with localrun.services(state_dir, seed=seed) as (s3, simulator):
        print(f"local S3 endpoint: {s3.url}; gateway simulator: {simulator.url}")
        env = localrun.airflow_environment(
            state_dir,
            crm_url=crm_url,
            s3=s3,
            gateway_url=simulator.url,
            extra={"VOICE_NOTIFY_RETRY_DELAY_S": "5"},
        )
        localrun.prepare_airflow(env)
        date_text = campaign_date.isoformat()
        print(f"running: airflow dags test {DAG_ID} {date_text}")
        logs = state_dir / "logs"
        localrun.dags_test(env, DAG_ID, date_text, logs / f"dags-test-{date_text}.log")
        state = localrun.dag_run_state(env, DAG_ID, date_text)
        # Late outcomes and redials: the demo's campaign file redials at once,
        # at most twice, so one reconcile run settles every notice.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        print(f"running: airflow dags test {RECONCILE_DAG_ID} {now}")
        localrun.dags_test(env, RECONCILE_DAG_ID, now, logs / f"reconcile-{date_text}.log")
        reconcile_state = localrun.dag_run_state(env, RECONCILE_DAG_ID, now[:10])
        out_dir = state_dir / "output" / date_text
        copied = _copy_outputs(s3.url, "voice-notify", f"reports/{date_text}/report.json", out_dir)
    report = copied["report"]
    calls_now = _count_lines(calls_log) - calls_before
    wall = time.monotonic() - started
    print()
    print(
        f"campaign {date_text}: DAG run {state}, {report['notices']} notices, "
        f"wall time {wall:.1f} s"
    )
    print(f"  {RECONCILE_DAG_ID}: {reconcile_state}")
    print(f"  calls placed by this run: {calls_now} (simulator log {calls_log})")
    for title, counts in (
        ("by state", report["by_state"]),
        ("by outcome", report["by_outcome"]),
        ("calls by outcome", report["calls_by_outcome"]),
        ("by reason", report["by_reason"]),
    ):
        print(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    types = Counter(i["notice_type"] for i in report["items"])
    print(
        "  by notice type: " + ", ".join(f"{k or '<none>'}={v}" for k, v in sorted(types.items()))
    )
    print(
        f"  audio: {out_dir / 'audio'} ({copied['copied']} new files); "
        f"report: {out_dir / 'report.json'}"
    )
    return 0 if state == reconcile_state == "success" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=localrun.REPO_ROOT / ".demo")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated call outcomes")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is missing: run `make demo` (it installs it) or apt-get install espeak-ng")
        return 2
    return run(args.state_dir.resolve(), args.date, args.seed)


if __name__ == "__main__":
    sys.exit(main())
