"""Fixtures of the voice registry tests: the registry on each database backend, S3."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from voice_notify.db import migrate

ALL_TYPES = ("appointment_confirmation", "pension_arrival", "policy_renewal", "repayment_reminder")
DAY = dt.date(2026, 11, 26)


@pytest.fixture
def registry(db_engine: sa.Engine) -> sa.Engine:
    """An empty voice registry (and ledger) on SQLite, PostgreSQL and MariaDB in turn."""

    migrate.upgrade(db_engine)
    return db_engine


@pytest.fixture
def sqlite_registry(tmp_path) -> sa.Engine:
    from voice_notify.db.sql import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def s3_client(s3_bucket: str):
    import boto3

    return boto3.client("s3")
