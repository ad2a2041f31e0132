"""Local services and environment for the demo and the tests.

Starts what a laptop lacks (an S3 endpoint with moto's server mode, the voice
gateway simulator) on loopback ports, and builds the environment that makes
Airflow use an embedded SQLite metadata database and the right Connections.
Everything started here is stopped by the same object.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers any HTTP status, or fail with a clear message."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@dataclass
class S3Endpoint:
    """moto's S3 server on a loopback port (state in memory, gone when stopped)."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        _terminate(self.process)

    def client(self):
        """A boto3 S3 client for this endpoint (moto accepts any credentials)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def connection_json(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "us-east-1", "endpoint_url": self.url},
            }
        )


def start_s3(log_path: Path) -> S3Endpoint:
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/moto-api/", 30, proc)
    except Exception:
        _terminate(proc)
        raise
    return S3Endpoint(url, proc)


def _terminate(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def crm_connection_json(url: str | sa.URL) -> str:
    """An Airflow Connection (JSON form) for a CRM SQLAlchemy URL."""
    url = sa.make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": url.database})
    conn_type = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}[backend]
    return json.dumps(
        {
            "conn_type": conn_type,
            "host": url.host,
            "port": url.port,
            "login": url.username,
            "password": url.password,
            "schema": url.database,
        }
    )


def gateway_connection_json(base_url: str, timeout_s: float = 5.0) -> str:
    """The ``voice_gateway`` Connection for the simulator's native (HTTP) protocol."""
    host_port = base_url.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    return json.dumps(
        {
            "conn_type": "http",
            "host": host,
            "port": int(port) if port else None,
            "schema": "http",
            "extra": {"kind": "simulator", "timeout_s": timeout_s},
        }
    )


def pythonpath_of_checkout() -> str:
    """PYTHONPATH for child processes: this checkout's code first (the development harness
    is not installed, and a venv's editable install may point at another checkout)."""
    return os.pathsep.join(
        p for p in (str(REPO_ROOT / "plugins"), str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )


def airflow_environment(
    state_dir: Path,
    *,
    crm_url: str,
    s3: S3Endpoint,
    gateway_url: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for ``airflow`` commands that run voice-notify on this machine."""
    airflow_home = state_dir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    pythonpath = pythonpath_of_checkout()
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        # `airflow standalone` starts its components as `airflow ...` from PATH.
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_CRM_DB": crm_connection_json(crm_url),
        "AIRFLOW_CONN_VOICE_NOTIFY_S3": s3.connection_json(),
        "AIRFLOW_CONN_VOICE_GATEWAY": gateway_connection_json(gateway_url),
        "VOICE_NOTIFY_INCLUDE_DIR": str(REPO_ROOT / "include"),
        # Local runs call a simulator: any hour, immediate redials (see the file).
        "VOICE_NOTIFY_CAMPAIGNS_FILE": str(REPO_ROOT / "include" / "demo" / "campaigns.yaml"),
        # The simulator's calls last a fraction of a second: look again soon.
        "VOICE_NOTIFY_POLL_INTERVAL_S": "0.5",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.update(extra or {})
    return env


def enroll_demo_voices(crm_url: str, s3: S3Endpoint, bucket: str, on: dt.date) -> list[str]:
    """Enroll the four demo agents with consent records (idempotent), as the demo needs."""
    from voice_notify_dev.demo_voices import enroll_demo_profiles

    client = s3.client()
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    engine = sa.create_engine(crm_url)
    try:
        return enroll_demo_profiles(engine, client, bucket, on)
    finally:
        engine.dispose()


def airflow(
    env: Mapping[str, str], *args: str, timeout_s: float = 900
) -> subprocess.CompletedProcess:
    """Run an ``airflow`` CLI command of this venv; raise with its output if it fails."""
    binary = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(binary), *args], env=dict(env), capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-5000:]}"
        )
    return proc


def prepare_airflow(env: Mapping[str, str], pool_slots: int = 4, dial_slots: int = 4) -> None:
    """Migrate the metadata database and declare the synthesis and dialing pools."""
    airflow(env, "db", "migrate")
    airflow(
        env,
        "pools",
        "set",
        "cosyvoice_gpu",
        str(pool_slots),
        "GPU synthesis slots (CosyVoice3 pods; the local worker in the demo)",
    )
    airflow(
        env,
        "pools",
        "set",
        "voice_gateway",
        str(dial_slots),
        "dial tasks at once (the call rate itself is shared through the ledger)",
    )


def dags_test(
    env: Mapping[str, str],
    dag_id: str,
    logical_date: str,
    log_path: Path,
    *,
    on_wait: Callable[[], None] | None = None,
    every_s: float = 3.0,
    timeout_s: float = 1800.0,
) -> int:
    """``airflow dags test`` for one date; its whole output goes to ``log_path``.

    The exit code alone does not say how the run ended: read ``dag_run_state``.

    :param on_wait: called every ``every_s`` seconds while the run goes on (progress)
    """
    binary = Path(sys.executable).with_name("airflow")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            [str(binary), "dags", "test", dag_id, logical_date],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout_s)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=every_s)
                if proc.poll() is None and on_wait is not None:
                    on_wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode


def run_progress(env: Mapping[str, str], dag_id: str) -> dict[str, int]:
    """Task instances of the newest run of ``dag_id``: done and in all, and mapped batches.

    Read from the metadata database while ``dags test`` runs (mapped tasks add instances
    as they expand, so the total grows).
    """
    engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    finished = ("success", "skipped", "failed", "upstream_failed", "removed")
    try:
        with engine.connect() as conn:
            run_id = conn.execute(
                sa.text("SELECT run_id FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1"),
                {"d": dag_id},
            ).scalar()
            rows = conn.execute(
                sa.text(
                    "SELECT task_id, map_index, state FROM task_instance "
                    "WHERE dag_id = :d AND run_id = :r"
                ),
                {"d": dag_id, "r": run_id},
            ).all()
    except sa.exc.OperationalError:  # the run's tables are not there yet
        return {"tasks": 0, "tasks_done": 0, "batches": 0, "batches_done": 0}
    finally:
        engine.dispose()
    mapped = [r for r in rows if r.map_index >= 0 and r.task_id.endswith("synthesize")]
    return {
        "tasks": len(rows),
        "tasks_done": sum(r.state in finished for r in rows),
        "batches": len(mapped),
        "batches_done": sum(r.state in finished for r in mapped),
    }


def dag_run_state(env: Mapping[str, str], dag_id: str, logical_date: str) -> str | None:
    """The state of the newest run of ``dag_id`` for a logical date (YYYY-MM-DD)."""
    engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT logical_date, state FROM dag_run WHERE dag_id = :dag ORDER BY id"),
                {"dag": dag_id},
            ).all()
    finally:
        engine.dispose()
    states = [state for when, state in rows if str(when)[:10] == logical_date]
    return states[-1] if states else None


@dataclass
class SipServiceProcess:
    """The SIP call service in a child process (``python -m voice_notify.gateway.sip.service``)."""

    url: str
    process: subprocess.Popen
    state_dir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.state_dir / "service.log"

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (running calls end, the queue is canceled), then wait; the exit code."""
        _terminate(self.process, timeout_s)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crashed host or an OOM kill would end it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> SipServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sip_service(
    state_dir: Path,
    *,
    db_url: str,
    trunk_host: str,
    trunk_port: int,
    secret: str,
    name: str = "sip-local",
    options: Mapping[str, str | float | int] | None = None,
    startup_timeout_s: float = 30.0,
) -> SipServiceProcess:
    """Start the SIP call service on a free loopback port and wait until it answers.

    The ledger database is migrated first (``--upgrade-schema``); its log goes to
    ``state_dir/service.log``; the secret and the database URL reach it through its
    environment, not its command line.

    :param options: more command-line options, e.g. ``{"ring-timeout-s": 10}``
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "voice_notify.gateway.sip.service"]
    command += ["--listen", "127.0.0.1:0", "--name", name, "--state-dir", str(state_dir)]
    command += ["--trunk-host", trunk_host, "--trunk-port", str(trunk_port), "--upgrade-schema"]
    for option, value in (options or {}).items():
        command += [f"--{option}", str(value)]
    pythonpath = os.pathsep.join(
        p for p in (str(REPO_ROOT / "plugins"), str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "VOICE_NOTIFY_SIP_SECRET": secret,
        "VOICE_NOTIFY_SIP_DB_URL": db_url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    server_file = state_dir / "server.json"
    server_file.unlink(missing_ok=True)
    log_path = state_dir / "service.log"
    with log_path.open("ab") as log_file:
        # Its own session: a Ctrl-C meant for the demo reaches it only through stop().
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            server = json.loads(server_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
            continue
        if server.get("pid") == process.pid:
            wait_http(server["url"] + "/healthz", 10, process)
            return SipServiceProcess(server["url"], process, state_dir)
        time.sleep(0.05)
    _terminate(process)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"SIP call service did not start; log tail:\n{tail}")


def sip_gateway_connection_json(url: str, secret: str, timeout_s: float = 10.0) -> str:
    """The ``voice_gateway`` Connection for the SIP call service."""
    host_port = url.split("://", 1)[1]
    host, _, port = host_port.partition(":")
    return json.dumps(
        {
            "conn_type": "http",
            "host": host,
            "port": int(port),
            "schema": "http",
            "password": secret,
            "extra": {"kind": "sip", "timeout_s": timeout_s},
        }
    )


@contextlib.contextmanager
def services(state_dir: Path) -> Iterator[S3Endpoint]:
    """The local S3 endpoint for one demo or test session (stopped on exit)."""
    s3 = start_s3(state_dir / "logs" / "s3.log")
    try:
        yield s3
    finally:
        s3.stop()
