"""Shared fixtures: real services on loopback, and Airflow configured before import.

Airflow reads its configuration when first imported, so the environment is set
here at module level, before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="vn-pytest-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
os.environ.setdefault(
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
)
os.environ.setdefault("VOICE_NOTIFY_INCLUDE_DIR", str(REPO_ROOT / "include"))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

# Fixtures of the gateway and simulator tests (tests/gateway, tests/dev).
pytest_plugins = ["tests.support.gateway_fixtures"]

POSTGRES_ENV = "VOICE_NOTIFY_TEST_POSTGRES_URL"
MARIADB_ENV = "VOICE_NOTIFY_TEST_MARIADB_URL"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """moto's S3 server on a loopback port, for the whole session."""
    from voice_notify_dev.localrun import start_s3

    endpoint = start_s3(tmp_path_factory.mktemp("s3") / "s3.log")
    yield endpoint
    endpoint.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the endpoint, with boto3's environment pointing at it."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint.url)
    bucket = f"vn-test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


def _server_env(url: sa.URL) -> str:
    return POSTGRES_ENV if url.get_backend_name() == "postgresql" else MARIADB_ENV


def _admin_run(server_url: sa.URL, statement: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


def _fresh_database(server_url: str, name: str) -> sa.URL:
    """Create an empty database on a running server; fail loudly if it is unreachable."""
    url = sa.make_url(server_url)
    if url.get_backend_name() == "postgresql":
        _admin_run(url, f'CREATE DATABASE "{name}"')
    else:
        _admin_run(url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return url.set(database=name)


def drop_database(url: sa.URL) -> None:
    """Drop a database made by ``database_url`` (nothing to do for SQLite files)."""
    if url.get_backend_name() == "sqlite":
        return
    server = sa.make_url(os.environ[_server_env(url)])
    if url.get_backend_name() == "postgresql":
        _admin_run(server, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    else:
        _admin_run(server, f"DROP DATABASE IF EXISTS `{url.database}`")


def database_url(backend: str, tmp_path: Path) -> sa.URL:
    """A URL of an empty CRM database on ``backend`` (sqlite, postgresql, mariadb).

    A server backend whose URL variable is unset is skipped with the reason; one
    whose URL is set but unreachable fails (CI sets both).
    """
    if backend == "sqlite":
        return sa.make_url(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    env = POSTGRES_ENV if backend == "postgresql" else MARIADB_ENV
    server = os.environ.get(env)
    if not server:
        pytest.skip(f"{env} is not set; CI sets it (see .ci/run)")
    return _fresh_database(server, f"vn_test_{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.URL]:
    """An empty database on each backend in turn."""
    url = database_url(request.param, tmp_path)
    yield url
    drop_database(url)


@pytest.fixture
def db_engine(db_url: sa.URL) -> Iterator[sa.Engine]:
    from voice_notify.db.sql import make_engine

    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def simulator(tmp_path: Path):
    """The voice gateway simulator with its own state folder."""
    from voice_notify_dev.simulator import start_simulator

    with start_simulator(tmp_path / "gateway", seed=11, call_seconds=0.2) as sim:
        yield sim


@pytest.fixture(scope="session")
def campaign_run(tmp_path_factory: pytest.TempPathFactory, s3_endpoint):
    """One demo campaign date run through the task functions (``tests.support.pipeline``),
    shared by the report and console tests. A test that re-runs the date must leave the
    ledger as it found it (every re-run does: that is what the report tests prove)."""
    import datetime as dt

    from tests.support import pipeline
    from voice_notify_dev.simulator import start_simulator

    state = tmp_path_factory.mktemp("campaign")
    with start_simulator(state / "gateway", seed=7, call_seconds=0.2) as sim:
        run = pipeline.prepare(state, s3_endpoint, sim.url, dt.date(2026, 11, 26))
        with run.environment():
            run.first_report = pipeline.run_date(run)
        yield run
