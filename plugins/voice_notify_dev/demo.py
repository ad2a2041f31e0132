"""``make demo``: today's campaign on the embedded default, end to end.

Seeds the demo CRM (SQLite at ``.demo/crm.sqlite``) unless it exists, starts
a local S3 endpoint and the gateway simulator (state in ``.demo/gateway/``) or, with
``GATEWAY=sip``, a SIP test callee and the SIP call service (``.demo/sip/``),
runs ``airflow dags test voice_notice_daily <date>`` on an embedded SQLite
metadata database, copies the campaign's audio and report to
``.demo/output/<date>/``, prints a summary and stops what it started. A second
run for the same date places no new calls: the ledger lives in the CRM file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import migrate, schema
from voice_notify.phone import InvalidPhoneNumber, to_e164
from voice_notify_dev import demo_crm, localrun

DAG_ID = "voice_notice_daily"
RECONCILE_DAG_ID = "voice_notice_reconcile"


def _copy_outputs(s3: localrun.S3Endpoint, bucket: str, report_key: str, out_dir: Path) -> dict:
    client = s3.client()
    report = json.loads(client.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2))
    html_key = report_key.replace("report.json", "report.html")
    with contextlib.suppress(client.exceptions.NoSuchKey):
        html = client.get_object(Bucket=bucket, Key=html_key)["Body"].read()
        (out_dir / "report.html").write_bytes(html)
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


def _progress(env: dict[str, str], dag_id: str, crm_url: str, campaign_date: dt.date):
    """A progress printer for a running ``dags test``: tasks, batches, calls so far."""
    started = time.monotonic()
    last: dict[str, object] = {"line": None, "at": 0.0}

    def show() -> None:
        run = localrun.run_progress(env, dag_id)
        engine = sa.create_engine(crm_url)
        try:
            with engine.connect() as conn:
                calls = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(schema.call_attempts)
                    .where(
                        schema.call_attempts.c.campaign_date == campaign_date,
                        schema.call_attempts.c.call_id.is_not(None),
                    )
                ).scalar()
        except sa.exc.OperationalError:
            calls = 0
        finally:
            engine.dispose()
        batches = (
            f", batches synthesized {run['batches_done']}/{run['batches']}"
            if run["batches"]
            else ""
        )
        tasks = f"tasks {run['tasks_done']}/{run['tasks']} done"
        line = f"{dag_id}: {tasks}{batches}, calls placed {calls}"
        now = time.monotonic()
        # A line when something moved, else one every half minute to show it is alive.
        if line != last["line"] or now - float(last["at"]) >= 30:
            print(f"  [{now - started:5.0f} s] {line}", flush=True)
            last.update(line=line, at=now)

    return show


def _call_attempts(crm_url: str) -> list[sa.Row]:
    engine = sa.create_engine(crm_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            return conn.execute(sa.select(schema.call_attempts)).all()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _gateway(kind: str, state_dir: Path, crm_url: str, seed: int) -> Iterator[dict[str, str]]:
    """Start the callee side of the chosen gateway; yields the environment it needs."""
    if kind == "simulator":
        from voice_notify_dev.simulator import start_simulator

        with start_simulator(state_dir / "gateway", seed=seed, call_seconds=0.3) as sim:
            faults = os.environ.get("GATEWAY_FAULTS") or "none"
            print(f"gateway simulator: {sim.url} (faults: {faults})")
            yield {
                "AIRFLOW_CONN_VOICE_GATEWAY": localrun.gateway_connection_json(sim.url, 2.0),
            }
        return
    from voice_notify_dev.sip_callee import start_sip_callee

    engine = sa.create_engine(crm_url)
    with engine.connect() as conn:
        phones = conn.execute(sa.select(demo_crm.customers.c.phone)).scalars().all()
    engine.dispose()
    numbers = []
    for phone in phones:
        try:
            numbers.append(to_e164(phone))
        except InvalidPhoneNumber:
            continue
    secret = secrets.token_urlsafe(24)
    with (
        start_sip_callee(state_dir / "sip" / "callee", numbers, ring_s=0.5) as callee,
        localrun.start_sip_service(
            state_dir / "sip" / "service",
            db_url=crm_url,  # the call book lives in the ledger, here the CRM's database
            trunk_host=callee.host,
            trunk_port=callee.port,
            secret=secret,
            name="sip-demo",
            options={
                "caller-id": "+861095555",
                "setup-timeout-s": 5,
                "ring-timeout-s": 10,
                "max-call-s": 120,
                "dtmf-grace-s": 2,
                "max-calls": 16,
                "rtp-ports": "20000-29999",
            },
        ) as service,
    ):
        print(f"SIP test callee: sip:<number>@127.0.0.1:{callee.port} ({len(numbers)} numbers)")
        print(f"SIP call service: {service.url} (log {service.log_path})")
        yield {
            "AIRFLOW_CONN_VOICE_GATEWAY": localrun.sip_gateway_connection_json(service.url, secret),
            # Whole notices last 15-25 s on a real line.
            "VOICE_NOTIFY_CALL_TIMEOUT_S": "900",
        }


def _sip_matches(
    state_dir: Path, s3: localrun.S3Endpoint, crm_url: str, attempts: Sequence[sa.Row]
) -> list[dict]:
    """For each answered SIP call: does the callee's recording equal the audio sent?"""
    from voice_notify_dev.sip_callee import compare_answered_calls

    client = s3.client()
    engine = sa.create_engine(crm_url)
    try:
        with engine.connect() as conn:
            book = sa.select(schema.sip_calls.c.call_id, schema.sip_calls.c.sip_call_id)
            sip_call_ids = dict(conn.execute(book).all())
    finally:
        engine.dispose()
    # The callee names its recordings by the SIP Call-ID it saw; the call book maps ours.
    sent = {
        sip_call_ids[a.call_id]: client.get_object(Bucket="voice-notify", Key=a.audio_key)[
            "Body"
        ].read()
        for a in attempts
        if a.call_id and a.audio_key and sip_call_ids.get(a.call_id)
    }
    return [m.as_dict() for m in compare_answered_calls(state_dir / "sip" / "callee", sent)]


def _serve_console(env: dict[str, str], state_dir: Path, date_text: str, port: int) -> None:
    """``--serve``: a local Airflow API server with the console, until Ctrl-C.

    Airflow's simple auth manager with one user, ``operator`` (role admin), whose password
    is generated once into the demo's state folder and printed.
    """
    import secrets
    import signal
    import subprocess

    passwords = state_dir / "airflow" / "console-passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"operator": secrets.token_urlsafe(12)}))
    password = json.loads(passwords.read_text())["operator"]
    server_env = {
        **env,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "operator:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    binary = Path(sys.executable).with_name("airflow")
    log_path = state_dir / "logs" / "api-server.log"

    def stop(signum, frame):  # SIGTERM (and SIGINT, also when started in the background)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [str(binary), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            localrun.wait_http(f"{url}/api/v2/monitor/health", 180, proc)
            print()
            print(f"notice console: {url}/voice-notify-console/notices?date={date_text}")
            print(f"  Airflow UI:   {url}/dags/{DAG_ID} (each run has Campaign notices / report)")
            print(f"  log in as operator / {password}   (API server log: {log_path})")
            print(
                "  the local S3 and the gateway simulator stay up with it; Ctrl-C stops all",
                flush=True,
            )
            proc.wait()
        except KeyboardInterrupt:
            print("stopping the API server, the local S3 and the gateway", flush=True)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def run(
    state_dir: Path,
    campaign_date: dt.date,
    seed: int,
    gateway: str = "simulator",
    serve_port: int | None = None,
    customers: int = 600,
    crm_url: str | None = None,
) -> int:
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    crm_url = crm_url or f"sqlite:///{state_dir / 'crm.sqlite'}"
    seeded = demo_crm.seed(
        sa.create_engine(crm_url),
        demo_crm.SeedSpec(anchor_date=campaign_date, customers=customers),
    )
    print(
        f"demo CRM: {sa.make_url(crm_url).render_as_string()} "
        f"({'seeded' if seeded['seeded'] else 'existing'}, {seeded['customers']} customers)"
    )
    attempts_before = {a.id for a in _call_attempts(crm_url)}
    logs = state_dir / "logs"
    date_text = campaign_date.isoformat()
    matches: list[dict] = []
    with (
        localrun.services(state_dir) as s3,
        _gateway(gateway, state_dir, crm_url, seed) as gateway_env,
    ):
        print(f"local S3 endpoint: {s3.url}")
        voices = localrun.enroll_demo_voices(crm_url, s3, "voice-notify", campaign_date)
        print(f"voice profiles with consent: {', '.join(voices)}")
        env = localrun.airflow_environment(
            state_dir,
            crm_url=crm_url,
            s3=s3,
            gateway_url="http://127.0.0.1:1",
            extra={
                "VOICE_NOTIFY_RETRY_DELAY_S": "5",
                # The reconcile passes below run now: they must reach back to a past date.
                "VOICE_NOTIFY_RECONCILE_LOOKBACK_DAYS": str(
                    max(3, (dt.datetime.now(dt.UTC).date() - campaign_date).days)
                ),
                **gateway_env,
            },
        )
        localrun.prepare_airflow(env)
        print(f"running: airflow dags test {DAG_ID} {date_text}")
        localrun.dags_test(
            env,
            DAG_ID,
            date_text,
            logs / f"dags-test-{date_text}.log",
            on_wait=_progress(env, DAG_ID, crm_url, campaign_date),
            # `dags test` synthesizes batch after batch: a larger CRM takes longer.
            timeout_s=max(1800.0, customers * 0.5),
        )
        state = localrun.dag_run_state(env, DAG_ID, date_text)
        # Late outcomes and redials: the demo's campaign file redials at once, at
        # most twice; a fault mix can need another pass (bounded).
        for n in range(3):
            now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
            print(f"running: airflow dags test {RECONCILE_DAG_ID} {now}")
            localrun.dags_test(
                env,
                RECONCILE_DAG_ID,
                now,
                logs / f"reconcile-{date_text}-{n}.log",
                on_wait=_progress(env, RECONCILE_DAG_ID, crm_url, campaign_date),
            )
            reconcile_state = localrun.dag_run_state(env, RECONCILE_DAG_ID, now[:10])
            if _all_settled(crm_url, campaign_date):
                break
        out_dir = state_dir / "output" / date_text
        copied = _copy_outputs(s3, "voice-notify", f"reports/{date_text}/report.json", out_dir)
        new_attempts = [a for a in _call_attempts(crm_url) if a.id not in attempts_before]
        if gateway == "sip":
            matches = _sip_matches(state_dir, s3, crm_url, new_attempts)
        _summary(state, reconcile_state, copied, new_attempts, gateway, matches, out_dir, started)
        if serve_port is not None:
            _serve_console(env, state_dir, date_text, serve_port)
    ok = state == reconcile_state == "success" and all(m["matches"] for m in matches)
    return 0 if ok else 1


def _summary(state, reconcile_state, copied, new_attempts, gateway, matches, out_dir, started):
    report = copied["report"]
    date_text = report["campaign_date"]
    wall = time.monotonic() - started
    print()
    print(
        f"campaign {date_text}: DAG run {state}, {report['notices']} notices, "
        f"wall time {wall:.1f} s"
    )
    print(f"  {RECONCILE_DAG_ID}: {reconcile_state}")
    print(f"  calls placed by this run: {len(new_attempts)} (gateway: {gateway})")
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
        f"report: {out_dir / 'report.html'} (and report.json)"
    )
    if gateway == "sip":
        good = sum(m["matches"] for m in matches)
        print(f"  SIP recordings equal to the audio sent: {good} of {len(matches)} answered calls")
        for m in matches:
            if "ncc" not in m:  # no recording, or no audio sent under that Call-ID
                print(f"    {m['call_id'][:16]} {m['behaviour']:<24} {m['problem']}")
                continue
            print(
                f"    {m['call_id'][:16]} {m['behaviour']:<24} sent {m['sent_s']:.2f} s "
                f"ncc {m['ncc']:.4f} frames {m['equal_frames']}/{m['active_frames']}"
                f"{'' if m['matches'] else '  MISMATCH ' + str(m['problem'])}"
            )
        (out_dir / "sip_matches.json").write_text(json.dumps(matches, indent=2))


def _all_settled(crm_url: str, campaign_date: dt.date) -> bool:
    engine = sa.create_engine(crm_url)
    try:
        with engine.connect() as conn:
            rows = ledger.rows_for_date(conn, campaign_date)
    finally:
        engine.dispose()
    return all(ledger.LedgerState(r.state).terminal for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=localrun.REPO_ROOT / ".demo")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated call outcomes")
    parser.add_argument(
        "--gateway",
        choices=("simulator", "sip"),
        default="simulator",
        help="simulator (HTTP protocol) or sip (SIP trunk calls to a local baresip callee)",
    )
    parser.add_argument(
        "--serve",
        nargs="?",
        type=int,
        const=8080,
        default=None,
        metavar="PORT",
        help="afterwards keep a local Airflow API server up (default port 8080) with the "
        "notice console, the local S3 and the gateway, until Ctrl-C",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=600,
        help="customers in a newly seeded demo CRM (about one in four has a notice due)",
    )
    parser.add_argument(
        "--crm-url",
        default=None,
        help="SQLAlchemy URL of the CRM (and ledger) database instead of .demo/crm.sqlite, "
        "e.g. a PostgreSQL database for a run at volume",
    )
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is missing: run `make demo` (it installs it) or apt-get install espeak-ng")
        return 2
    return run(
        args.state_dir.resolve(),
        args.date,
        args.seed,
        args.gateway,
        args.serve,
        customers=args.customers,
        crm_url=args.crm_url,
    )


if __name__ == "__main__":
    sys.exit(main())
