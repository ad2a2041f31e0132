"""Fixtures that run the DAGs through Airflow itself, on an embedded metadata DB."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from voice_notify_dev import localrun


@pytest.fixture(scope="session")
def airflow_state(tmp_path_factory: pytest.TempPathFactory, s3_endpoint) -> Path:
    """One migrated Airflow home for the session (connections vary per test)."""
    state = tmp_path_factory.mktemp("airflow-state")
    env = localrun.airflow_environment(
        state, crm_url="sqlite:////nonexistent", s3=s3_endpoint, gateway_url="http://127.0.0.1:1"
    )
    localrun.prepare_airflow(env)
    return state


@pytest.fixture
def campaign_env(airflow_state: Path, s3_endpoint, simulator):
    """Build the environment for one campaign run against a given CRM URL."""

    def build(crm_url: str, **extra: str) -> dict[str, str]:
        bucket = f"vn-e2e-{uuid.uuid4().hex[:10]}"
        return localrun.airflow_environment(
            airflow_state,
            crm_url=crm_url,
            s3=s3_endpoint,
            gateway_url=simulator.url,
            extra={
                "VOICE_NOTIFY_BUCKET": bucket,
                "VOICE_NOTIFY_RETRY_DELAY_S": "1",
                "VOICE_NOTIFY_CALL_TIMEOUT_S": "60",
                **extra,
            },
        )

    return build
