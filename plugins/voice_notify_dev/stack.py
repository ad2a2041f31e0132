"""``make stack``: voice-notify deployed on one machine, the way operators run it.

Unlike ``make demo`` (``airflow dags test`` on SQLite), this is a deployment:

- a PostgreSQL metadata database and the demo CRM seeded into PostgreSQL (the
  dispatch ledger lives beside it), on the machine's server;
- the four Airflow services as separate processes (``api-server``,
  ``scheduler``, ``dag-processor``, ``triggerer``) and the CeleryExecutor on
  Redis with two ``airflow celery worker`` processes;
- the local S3 endpoint (moto's server) and the gateway simulator, reached
  through the same Connections production uses (``crm_db``,
  ``voice_notify_s3``, ``voice_gateway``), with signed status callbacks to the
  API server's ``/voice-notify/callbacks/http`` route;
- or, with ``--gateway sip``, instead of the simulator: a baresip test callee serving
  the demo CRM's numbers (``sip_callee``) and the SIP call service
  (``voice_notify.gateway.sip.service``, its call book in the ledger database), each
  a long-running service of the stack, the workers dialling through the service.

``up`` starts everything in its own process group, records the groups in
``<state>/stack.json`` and returns; ``down`` stops exactly those groups (and a
database or Redis server that ``up`` had to start). Databases are named
``<name>_airflow`` and ``<name>_crm`` (default name ``vn_stack``), and
everything runs on loopback and free ports.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from voice_notify_dev import demo_crm, localrun

STATE_FILE = "stack.json"
# What the stack in this state folder keeps after `down` (its databases, its Celery
# queue on the broker), for `clean`.
DATABASES_FILE = "databases.json"
SECRETS_FILE = "secrets.json"
ADMIN_USER = "admin"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
BUCKET = "voice-notify"
GATEWAYS = ("simulator", "sip")
# The stack's endpoints, stopped after the Airflow services that talk to them.
ENDPOINTS = ("s3", "simulator", "sip-service", "sip-callee", "redis")
CALLEE_FILE = "callee.json"


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """What to start.

    :param name: prefix of the databases, the Celery queue and the pool of this stack
    :param postgres_url: SQLAlchemy URL of a PostgreSQL server where databases may be made
    :param redis_url: the Celery broker (pick a database number no one else uses)
    :param anchor_date: the date the demo CRM's due dates are spread around
    :param customers: customers in the demo CRM (the seed needs at least 50)
    :param call_seconds: how long a simulated call lasts, acceptance to end
    :param gateway: ``simulator`` (the HTTP protocol's simulator) or ``sip`` (the SIP
        call service dialling a local baresip callee: calls last as long as their audio)
    :param sip_ring_s: seconds per ring of the SIP test callee
    :param sip_max_calls: the SIP call service's lines (``--max-calls``)
    :param enroll_voices: enroll the demo agents' voices (without them every notice is
        spoken in the standard voice)
    :param extra_env: more environment for every service (tests shorten timers here)
    """

    state_dir: Path
    name: str = "vn_stack"
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    api_port: int = 0
    workers: int = 2
    worker_concurrency: int = 2
    pool_slots: int = 4
    anchor_date: dt.date = dataclasses.field(default_factory=dt.date.today)
    customers: int = 600
    gateway_seed: int = 7
    call_seconds: float = 0.3
    gateway: str = "simulator"
    sip_ring_s: float = 0.5
    sip_max_calls: int = 16
    enroll_voices: bool = True
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"stack name {self.name!r} must be usable as a database name")
        if self.workers < 1 or self.worker_concurrency < 1:
            raise ValueError("a stack needs at least one worker with one slot")
        if self.gateway not in GATEWAYS:
            raise ValueError(f"gateway {self.gateway!r} is none of {GATEWAYS}")

    @property
    def metadata_url(self) -> sa.URL:
        return sa.make_url(self.postgres_url).set(database=f"{self.name}_airflow")

    @property
    def crm_url(self) -> sa.URL:
        return sa.make_url(self.postgres_url).set(database=f"{self.name}_crm")


@dataclasses.dataclass
class Service:
    """One started process; ``group`` says whether it leads its own process group."""

    name: str
    pid: int
    log: str
    group: bool = True
    # The process's start time (/proc/<pid>/stat), so that a pid reused after a
    # reboot or a crash of the stack is never signalled in its stead.
    started: int | None = None


@dataclasses.dataclass
class StackState:
    """What ``up`` started and how to reach it (``<state>/stack.json``)."""

    state_dir: str
    name: str
    api_url: str
    username: str
    password: str
    crm_url: str
    metadata_url: str
    s3_url: str
    gateway_url: str
    gateway_state: str
    bucket: str
    env: dict[str, str]
    services: list[Service]
    started_postgres: str | None = None
    gateway: str = "simulator"
    # The SIP test callee's folder (its calls.jsonl and recordings), with --gateway sip.
    callee_state: str | None = None

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["services"] = [Service(**s) for s in raw["services"]]
        return cls(**raw)

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2), encoding="utf-8")
        path.chmod(0o600)  # it holds the admin password and the service environment

    def api(self) -> AirflowApi:
        return AirflowApi(self.api_url, self.username, self.password)


class AirflowApi:
    """The REST API the Airflow UI uses, with the simple auth manager's token."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only; never through a proxy

    def _login(self) -> None:
        response = self._session.post(
            f"{self.base_url}/auth/token", json=self._credentials, timeout=30
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        self._session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; log in on first use or when the token expired."""
        if "Authorization" not in self._session.headers:
            self._login()
        url = f"{self.base_url}/api/v2{path}"
        response = self._session.request(method, url, timeout=60, **kwargs)
        if response.status_code == 401:
            self._login()
            response = self._session.request(method, url, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, json=dict(body))

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, json=dict(body))


# --- the machine's servers -------------------------------------------------------


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _as_root(command: Sequence[str]) -> list[str]:
    return list(command) if os.geteuid() == 0 else ["sudo", *command]


def _ensure_postgres(url: sa.URL) -> str | None:
    """Start the Debian cluster if nothing answers; returns its version if this started it."""
    host, port = url.host or "127.0.0.1", url.port or 5432
    if _answers(host, port):
        return None
    clusters = (
        sorted(p.name for p in Path("/etc/postgresql").glob("*"))
        if Path("/etc/postgresql").is_dir()
        else []
    )
    if not clusters:
        raise RuntimeError(
            f"no PostgreSQL answers at {host}:{port} and no Debian cluster exists: "
            "run `make stack` (it installs postgresql) or set --postgres-url"
        )
    version = clusters[-1]
    subprocess.run(
        _as_root(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]),
        check=True,
    )
    deadline = time.monotonic() + 30
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL {version} started but does not answer on {port}")
        time.sleep(0.5)
    return version


def _ensure_redis(redis_url: str, state_dir: Path) -> Service | None:
    """Start a private ``redis-server`` on the URL's port if nothing answers there."""
    parts = urlsplit(redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if _answers(host, port):
        return None
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: run `make stack` (it installs it)")
    data = state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    command = [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"]
    service = _spawn("redis", command, dict(os.environ), state_dir, cwd=data)
    deadline = time.monotonic() + 15
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer on {port}; see {service.log}")
        time.sleep(0.2)
    return service


def _ensure_database(url: sa.URL) -> None:
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": url.database},
            ).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    finally:
        admin.dispose()


def drop_databases(state_dir: Path) -> list[str]:
    """Drop the databases the stack in ``state_dir`` made and forget its Celery queue on
    the broker (``make clean-stack``; the tests' teardown); returns what was dropped."""
    path = state_dir / DATABASES_FILE
    if not path.exists():
        return []
    kept = json.loads(path.read_text(encoding="utf-8"))
    urls = [sa.make_url(u) for u in kept["databases"]]
    admin = sa.create_engine(urls[0].set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for url in urls:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
    dropped = [u.database for u in urls]
    import redis

    # A broker that is gone has nothing to forget.
    with contextlib.suppress(redis.exceptions.ConnectionError, OSError):
        broker = redis.Redis.from_url(kept["redis_url"], socket_timeout=5)
        # Kombu's bindings and the queue itself, all named after the queue.
        keys = [k for k in broker.scan_iter(match=f"*{kept['queue']}*")]
        if keys:
            broker.delete(*keys)
        dropped.append(f"queue {kept['queue']} ({len(keys)} keys)")
    path.unlink()
    return dropped


# --- processes -------------------------------------------------------------------


def _spawn(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    state_dir: Path,
    cwd: Path | None = None,
) -> Service:
    """Start ``command`` as the leader of a new process group, its output in a log file.

    SIGINT is restored first: a process started from a non-interactive shell (make,
    CI) inherits SIGINT ignored, and ``down`` may need it.
    """
    log = state_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    return Service(name, proc.pid, str(log), started=_start_time(proc.pid))


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(service: Service) -> bool:
    # Reap the process if it is an exited child of this one (the tests start the
    # stack in-process); a zombie would still count as a member of its group.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(service.pid, os.WNOHANG)
    now = _start_time(service.pid)
    if service.started is not None and now is not None and now != service.started:
        # Another process has the recorded pid. A group outlives its leader only while
        # members remain, and then its id is not handed out again.
        return False
    try:
        (os.killpg if service.group else os.kill)(service.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(service: Service, sig: signal.Signals) -> None:
    if _alive(service):
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if service.group else os.kill)(service.pid, sig)


def _stop_all(services: Sequence[Service], grace_s: float = 20.0) -> None:
    """SIGTERM every service's group (or process) at once, wait for all of them, then
    SIGKILL what is left: stopping takes the slowest one's time, not the sum."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        deadline = time.monotonic() + wait_s
        while any(_alive(s) for s in services) and time.monotonic() < deadline:
            # Again every few seconds: a SIGTERM can land where Python swallows the
            # exit it raises (the scheduler's handler inside a garbage-collector
            # callback: "Exception ignored ... SystemExit"), and the next one does not.
            for service in services:
                _signal(service, sig)
            step = time.monotonic() + 5.0
            while any(_alive(s) for s in services) and time.monotonic() < min(step, deadline):
                time.sleep(0.2)
    left = [f"{s.name} (pid {s.pid})" for s in services if _alive(s)]
    if left:
        raise RuntimeError(f"survived SIGKILL: {', '.join(left)}")


def _airflow_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


# --- environment -----------------------------------------------------------------


def _secrets(state_dir: Path) -> dict[str, str]:
    """Keys kept across restarts of the stack (the Fernet key encrypts DB fields)."""
    path = state_dir / SECRETS_FILE
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    from cryptography.fernet import Fernet

    values = {
        "fernet_key": Fernet.generate_key().decode(),
        "jwt_secret": secrets.token_urlsafe(64),
        "api_secret_key": secrets.token_urlsafe(32),
        "admin_password": secrets.token_urlsafe(12),
        "gateway_secret": secrets.token_urlsafe(24),
    }
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return values


def _gateway_connection(gateway_url: str, secret: str) -> str:
    """localrun's simulator Connection plus the callback secret (its password)."""
    connection = json.loads(localrun.gateway_connection_json(gateway_url, 2.0))
    connection["password"] = secret
    return json.dumps(connection)


def stack_environment(
    config: StackConfig,
    keys: Mapping[str, str],
    *,
    s3: localrun.S3Endpoint,
    gateway: GatewayEndpoint,
    api_port: int,
) -> dict[str, str]:
    """The environment of every service: localrun's, made a deployment."""
    airflow_home = config.state_dir / "airflow"
    passwords = airflow_home / "simple_auth_manager_passwords.json"
    api_url = f"http://127.0.0.1:{api_port}"
    metadata = config.metadata_url.render_as_string(hide_password=False)
    extra = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__PARALLELISM": "16",
        # New DAGs wait for an operator (Airflow's default; the demo's environment
        # unpauses them because `dags test` has no operator).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__CELERY__BROKER_URL": config.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+"
        + metadata.replace("postgresql+psycopg2://", "postgresql://"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(config.worker_concurrency),
        # This stack's own queue: another stack on the same Redis never takes its tasks.
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": config.name,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW_CONN_VOICE_GATEWAY": gateway.connection,
        "VOICE_NOTIFY_STATUS_CALLBACK_URL": f"{api_url}/voice-notify/callbacks/http",
        "VOICE_NOTIFY_BUCKET": BUCKET,
        "VOICE_NOTIFY_RETRY_DELAY_S": "10",
        **gateway.env,
    }
    extra.update(config.extra_env)
    return localrun.airflow_environment(
        config.state_dir,
        crm_url=config.crm_url.render_as_string(hide_password=False),
        s3=s3,
        gateway_url=gateway.url,
        extra=extra,
    )


# --- the gateway side ------------------------------------------------------------


@dataclasses.dataclass
class GatewayEndpoint:
    """What ``up`` started on the telephone side, and the Connection the workers use.

    :param state: the folder of the gateway's own record (the simulator's calls.jsonl,
        the SIP call service's state)
    :param env: more environment for the Airflow services
    :param callee_state: the SIP test callee's folder (calls.jsonl, recordings)
    """

    url: str
    state: str
    connection: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    callee_state: str | None = None


def _start_simulator(
    config: StackConfig, keys: Mapping[str, str], started: list[Service]
) -> GatewayEndpoint:
    from voice_notify_dev.simulator import start_simulator

    state_dir = config.state_dir / "gateway"
    simulator = start_simulator(
        state_dir,
        seed=config.gateway_seed,
        call_seconds=config.call_seconds,
        faults=os.environ.get("GATEWAY_FAULTS", ""),
        callback_secret=keys["gateway_secret"],
    )
    started.append(
        Service(
            "simulator",
            simulator.pid,
            str(simulator.log_path),
            group=False,
            started=_start_time(simulator.pid),
        )
    )
    return GatewayEndpoint(
        simulator.url,
        str(state_dir),
        _gateway_connection(simulator.url, keys["gateway_secret"]),
    )


def callee_numbers(crm_url: str) -> list[str]:
    """The CRM's customers' numbers in E.164, the ones a test callee must serve."""
    from voice_notify.phone import InvalidPhoneNumber, to_e164

    engine = sa.create_engine(crm_url)
    try:
        with engine.connect() as conn:
            phones = conn.execute(sa.select(demo_crm.customers.c.phone)).scalars().all()
    finally:
        engine.dispose()
    numbers = set()
    for phone in phones:
        with contextlib.suppress(InvalidPhoneNumber):
            numbers.add(to_e164(phone))
    return sorted(numbers)


def _start_sip_callee(config: StackConfig, crm_url: str, started: list[Service]) -> Path:
    """The baresip test callee as a service of its own (``stack sip-callee``); returns
    its folder once it listens (its port is in ``callee.json`` there)."""
    callee_dir = config.state_dir / "sip" / "callee"
    callee_dir.mkdir(parents=True, exist_ok=True)
    (callee_dir / CALLEE_FILE).unlink(missing_ok=True)
    numbers = callee_numbers(crm_url)
    (callee_dir / "numbers.json").write_text(json.dumps(numbers), encoding="utf-8")
    command = [sys.executable, "-m", "voice_notify_dev.stack", "sip-callee"]
    command += ["--callee-dir", str(callee_dir), "--ring-s", str(config.sip_ring_s)]
    env = {**os.environ, "PYTHONPATH": localrun.pythonpath_of_checkout()}
    service = _spawn("sip-callee", command, env, config.state_dir)
    started.append(service)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(service):
        with contextlib.suppress(FileNotFoundError, ValueError):
            ready = json.loads((callee_dir / CALLEE_FILE).read_text(encoding="utf-8"))
            if ready.get("pid") == service.pid:
                return callee_dir
        time.sleep(0.2)
    raise RuntimeError(f"the SIP test callee did not start; see {service.log}")


def _start_sip(
    config: StackConfig, keys: Mapping[str, str], crm_url: str, started: list[Service]
) -> GatewayEndpoint:
    """The SIP test callee, then the SIP call service dialling it (call book: the ledger)."""
    callee_dir = _start_sip_callee(config, crm_url, started)
    callee = json.loads((callee_dir / CALLEE_FILE).read_text(encoding="utf-8"))
    service_dir = config.state_dir / "sip" / "service"
    service = localrun.start_sip_service(
        service_dir,
        db_url=crm_url,
        trunk_host=callee["host"],
        trunk_port=int(callee["port"]),
        secret=keys["gateway_secret"],
        name=f"{config.name}-sip",
        options={
            "caller-id": "+861095555",
            # Generous, as carriers' are: on a loaded machine (two workers synthesizing
            # beside the calls) the test callee can take seconds to answer a ring.
            "setup-timeout-s": 10,
            "ring-timeout-s": 30,
            "max-call-s": 120,
            "dtmf-grace-s": 2,
            "max-calls": config.sip_max_calls,
            # Apart from the callee's range (and from the SIP tests' ranges).
            "rtp-ports": "20000-29999",
        },
        startup_timeout_s=60,
    )
    # Its own process group: `down` reaches the baresip of every call it carries.
    started.append(
        Service("sip-service", service.pid, str(service.log_path), started=_start_time(service.pid))
    )
    return GatewayEndpoint(
        service.url,
        str(service_dir),
        localrun.sip_gateway_connection_json(service.url, keys["gateway_secret"]),
        # Whole notices last 15-25 s on a real line.
        env={"VOICE_NOTIFY_CALL_TIMEOUT_S": "900"},
        callee_state=str(callee_dir),
    )


def serve_sip_callee(callee_dir: Path, ring_s: float, rtp_ports: str) -> None:
    """``stack sip-callee``: the test callee for the numbers in ``numbers.json``, until
    SIGTERM. baresip lives as long as the thread that started it, here the main one."""
    import threading

    from voice_notify_dev.sip_callee import start_sip_callee

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    numbers = json.loads((callee_dir / "numbers.json").read_text(encoding="utf-8"))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    with start_sip_callee(callee_dir, numbers, ring_s=ring_s, rtp_ports=rtp_ports) as callee:
        ready = {"pid": os.getpid(), "host": callee.host, "port": callee.port}
        (callee_dir / CALLEE_FILE).write_text(json.dumps(ready), encoding="utf-8")
        logging.info("listening on %s:%s", callee.host, callee.port)
        while not stopping.wait(1.0):
            pass


# --- up / down -------------------------------------------------------------------


def prepare_demo_data(
    crm_url: str,
    s3: localrun.S3Endpoint,
    anchor_date: dt.date,
    customers: int,
    *,
    enroll_voices: bool = True,
) -> None:
    """Seed the demo CRM, create the ledger's schema and enroll the demo voices.

    Idempotent (an existing CRM keeps its history). The ledger's schema comes before
    any service starts, as a deployment migrates before it starts a new version.
    """
    crm = sa.create_engine(crm_url)
    try:
        demo_crm.seed(crm, demo_crm.SeedSpec(anchor_date=anchor_date, customers=customers))
    finally:
        crm.dispose()
    # The documented upgrade command, as a deployment runs it before the new version.
    subprocess.run(
        [sys.executable, "-m", "voice_notify.db.migrate", "upgrade", "--url", crm_url],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": localrun.pythonpath_of_checkout()},
    )
    if enroll_voices:
        localrun.enroll_demo_voices(crm_url, s3, BUCKET, anchor_date)
    else:
        client = s3.client()
        if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=BUCKET)


def _wait_ready(api: AirflowApi, services: Sequence[Service], timeout_s: float) -> None:
    """Until the API answers with a token and the daily DAG is parsed."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        dead = [s.name for s in services if not _alive(s)]
        if dead:
            raise RuntimeError(f"stack service(s) exited during start-up: {', '.join(dead)}")
        try:
            api.get("/dags/voice_notice_daily")
            api.get("/dags/voice_notice_reconcile")
            return
        except (requests.RequestException, RuntimeError) as exc:
            last = exc
            time.sleep(1)
    raise TimeoutError(f"the stack was not ready within {timeout_s} s: {last}")


def up(config: StackConfig, *, ready_timeout_s: float = 300) -> StackState:
    """Start the stack (or return the running one) and wait until the DAGs are parsed."""
    state_dir = config.state_dir.resolve()
    config = dataclasses.replace(config, state_dir=state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    running = StackState.load(state_dir)
    if running is not None:
        if all(_alive(s) for s in running.services):
            if running.gateway != config.gateway:
                raise RuntimeError(
                    f"the stack in {state_dir} runs with the {running.gateway} gateway: "
                    "stop it first (make stack-down)"
                )
            return running
        down(state_dir)  # half-dead: clear it away before starting afresh

    started: list[Service] = []
    started_postgres = None
    try:
        started_postgres = _ensure_postgres(config.metadata_url)
        redis = _ensure_redis(config.redis_url, state_dir)
        if redis is not None:
            started.append(redis)
        for url in (config.metadata_url, config.crm_url):
            _ensure_database(url)
        kept = {
            "databases": [
                u.render_as_string(hide_password=False)
                for u in (config.metadata_url, config.crm_url)
            ],
            "redis_url": config.redis_url,
            "queue": config.name,
        }
        (state_dir / DATABASES_FILE).write_text(json.dumps(kept), encoding="utf-8")
        s3 = localrun.start_s3(state_dir / "logs" / "s3.log")
        s3_log = str(state_dir / "logs" / "s3.log")
        started.append(Service("s3", s3.process.pid, s3_log, started=_start_time(s3.process.pid)))
        crm_text = config.crm_url.render_as_string(hide_password=False)
        prepare_demo_data(
            crm_text, s3, config.anchor_date, config.customers, enroll_voices=config.enroll_voices
        )

        keys = _secrets(state_dir)
        if config.gateway == "sip":
            gateway = _start_sip(config, keys, crm_text, started)
        else:
            gateway = _start_simulator(config, keys, started)

        api_port = config.api_port or localrun.free_port()
        env = stack_environment(config, keys, s3=s3, gateway=gateway, api_port=api_port)
        passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        passwords.parent.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({ADMIN_USER: keys["admin_password"]}), encoding="utf-8")
        passwords.chmod(0o600)
        localrun.prepare_airflow(env, pool_slots=config.pool_slots)

        commands = {
            "api-server": _airflow_command(
                "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"
            ),
            "scheduler": _airflow_command("scheduler", "--skip-serve-logs"),
            "dag-processor": _airflow_command("dag-processor"),
            "triggerer": _airflow_command("triggerer", "--skip-serve-logs"),
        }
        for n in range(1, config.workers + 1):
            # The task logs are files on this machine's disk, read by the API server.
            commands[f"worker-{n}"] = _airflow_command(
                "celery",
                "worker",
                "--celery-hostname",
                f"{config.name}-worker-{n}@%h",
                "--queues",
                config.name,
                "--concurrency",
                str(config.worker_concurrency),
                "--skip-serve-logs",
                "--without-gossip",
                "--without-mingle",
            )
        for name, command in commands.items():
            started.append(_spawn(name, command, env, state_dir))

        state = StackState(
            state_dir=str(state_dir),
            name=config.name,
            api_url=env["AIRFLOW__API__BASE_URL"],
            username=ADMIN_USER,
            password=keys["admin_password"],
            crm_url=crm_text,
            metadata_url=env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            s3_url=s3.url,
            gateway_url=gateway.url,
            gateway_state=gateway.state,
            bucket=BUCKET,
            env={k: v for k, v in env.items() if k.startswith(("AIRFLOW", "VOICE_NOTIFY"))},
            services=started,
            started_postgres=started_postgres,
            gateway=config.gateway,
            callee_state=gateway.callee_state,
        )
        state.save()
        _wait_ready(state.api(), started, ready_timeout_s)
        return state
    except BaseException:
        with contextlib.suppress(Exception):
            _stop_all(list(reversed(started)), grace_s=10)
        if StackState.load(state_dir) is not None:
            (state_dir / STATE_FILE).unlink()
        raise


def down(state_dir: Path) -> list[str]:
    """Stop what ``up`` started, newest first; returns the names stopped."""
    state = StackState.load(state_dir.resolve())
    if state is None:
        return []
    # The Airflow services first, together (workers finish or give back their tasks),
    # then what they talk to: S3, the gateway side and a Redis this stack started.
    airflow_services = [s for s in state.services if s.name not in ENDPOINTS]
    _stop_all(airflow_services)
    _stop_all([s for s in state.services if s.name in ENDPOINTS], grace_s=10.0)
    stopped = [s.name for s in airflow_services] + [
        s.name for s in state.services if s.name in ENDPOINTS
    ]
    if state.started_postgres:
        subprocess.run(
            _as_root(
                [
                    "pg_ctlcluster",
                    "--skip-systemctl-redirect",
                    state.started_postgres,
                    "main",
                    "stop",
                ]
            ),
            check=False,
        )
        stopped.append(f"postgresql {state.started_postgres}")
    (state_dir.resolve() / STATE_FILE).unlink()
    return stopped


def _print_started(state: StackState, seconds: float) -> None:
    print(f"voice-notify stack '{state.name}' is up ({seconds:.0f} s)")
    print(f"  Airflow UI:  {state.api_url}/   user {state.username}, password {state.password}")
    print(f"               (also in {state.state_dir}/{SECRETS_FILE})")
    print(f"  REST API:    {state.api_url}/api/v2 (token: POST {state.api_url}/auth/token)")
    print(f"  callbacks:   {state.api_url}/voice-notify/callbacks/http")
    print(f"  CRM:         {state.crm_url} (demo seed; the ledger is beside it)")
    print(f"  metadata DB: {state.metadata_url}")
    print(f"  S3:          {state.s3_url} (bucket {state.bucket})")
    if state.gateway == "sip":
        print(f"  gateway:     SIP call service {state.gateway_url} (log in {state.gateway_state})")
        print(f"  SIP callee:  {state.callee_state} (calls.jsonl, recordings/)")
    else:
        print(f"  gateway:     {state.gateway_url} (calls in {state.gateway_state}/calls.jsonl)")
    print(f"  logs:        {state.state_dir}/logs/ and {state.state_dir}/airflow/logs/")
    names = ", ".join(s.name for s in state.services)
    print(f"  processes:   {names}")
    print("The DAGs start paused: unpause voice_notice_daily and voice_notice_reconcile in")
    print("the UI, or trigger a date there. `make stack-down` stops everything.")


def _serve_sip_callee_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stack sip-callee", description=serve_sip_callee.__doc__)
    parser.add_argument("--callee-dir", type=Path, required=True)
    parser.add_argument("--ring-s", type=float, default=0.5)
    parser.add_argument("--rtp-ports", default="31000-31999")
    args = parser.parse_args(argv)
    serve_sip_callee(args.callee_dir, args.ring_s, args.rtp_ports)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sip-callee"]:  # a service of the stack, started by `up`
        return _serve_sip_callee_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "clean", "seed"))
    parser.add_argument("--state-dir", type=Path, default=localrun.REPO_ROOT / ".stack")
    parser.add_argument("--name", default=os.environ.get("VOICE_NOTIFY_STACK_NAME", "vn_stack"))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VOICE_NOTIFY_STACK_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("VOICE_NOTIFY_STACK_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument(
        "--gateway",
        choices=GATEWAYS,
        default="simulator",
        help="simulator (HTTP protocol) or sip (the SIP call service and a baresip callee)",
    )
    parser.add_argument("--crm-url", help="seed: SQLAlchemy URL of the CRM database")
    parser.add_argument("--s3-url", help="seed: the S3 endpoint (docker/compose.yaml)")
    args = parser.parse_args(argv)
    if args.command == "seed":
        # docker/compose.yaml's init step: the same demo data as `up`, on its services.
        s3 = localrun.S3Endpoint(args.s3_url, None)
        prepare_demo_data(args.crm_url, s3, args.date, args.customers)
        print(f"demo CRM and voices ready on {sa.make_url(args.crm_url).database}")
        return 0
    state_dir = args.state_dir.resolve()
    if args.command == "down":
        stopped = down(state_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    if args.command == "status":
        state = StackState.load(state_dir)
        if state is None:
            print("no stack is running")
            return 1
        for service in state.services:
            print(f"{service.name:<14} pid {service.pid:<8} {'up' if _alive(service) else 'DOWN'}")
        return 0 if all(_alive(s) for s in state.services) else 1
    config = StackConfig(
        state_dir=state_dir,
        name=args.name,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        api_port=args.port,
        anchor_date=args.date,
        customers=args.customers,
        gateway=args.gateway,
    )
    if args.command == "clean":
        down(state_dir)
        dropped = drop_databases(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        print(f"dropped: {', '.join(dropped) or 'nothing'}; removed {state_dir}")
        return 0
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is missing: run `make stack` (it installs it)")
        return 2
    if args.gateway == "sip" and shutil.which("baresip") is None:
        print("baresip is missing: run `make stack` (it installs baresip-core)")
        return 2
    started = time.monotonic()
    state = up(config)
    _print_started(state, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
