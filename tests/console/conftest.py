"""A real Airflow API server with the voice-notify plugin, over a campaign run in this
session (``campaign_run``), and headless Chromium to drive the console in it.

The server uses Airflow's simple auth manager with two users: ``operator`` (role user:
may trigger the campaign, so may preview) and ``auditor`` (role viewer: reads only).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from voice_notify_dev import localrun

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "voice_notice_daily"
PASSWORDS = {"operator": "operator-pw", "auditor": "auditor-pw"}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class ConsoleServer:
    url: str
    tokens: dict[str, str]
    run_id: str
    env: dict[str, str]

    @property
    def console(self) -> str:
        return f"{self.url}/voice-notify-console"


def artefacts_dir() -> Path:
    """Where the browser tests keep their screenshots (``.artefacts/`` is gitignored)."""
    path = Path(os.environ.get("VOICE_NOTIFY_TEST_ARTEFACTS", REPO / ".artefacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _post_json(url: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="session")
def console_server(campaign_run, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("console-airflow")
    passwords = state / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    env = localrun.airflow_environment(
        state,
        crm_url=campaign_run.crm_url,
        s3=campaign_run.s3,
        gateway_url=campaign_run.gateway_url,
        extra={
            **campaign_run.connections(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "operator:user,auditor:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": "console-tests-jwt-secret",
        },
    )
    localrun.airflow(env, "db", "migrate")
    localrun.airflow(env, "dags", "reserialize")
    port = localrun.free_port()
    log = (state / "api-server.log").open("w")
    binary = Path(sys.executable).with_name("airflow")
    proc = subprocess.Popen(
        [str(binary), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        localrun.wait_http(f"{url}/api/v2/monitor/health", 180, proc)
        tokens = {
            user: _post_json(f"{url}/auth/token", {"username": user, "password": pw})[
                "access_token"
            ]
            for user, pw in PASSWORDS.items()
        }
        day = campaign_run.campaign_date.isoformat()
        run = _post_json(
            f"{url}/api/v2/dags/{DAG_ID}/dagRuns",
            {"dag_run_id": f"manual__{day}", "logical_date": f"{day}T06:00:00Z"},
            tokens["operator"],
        )
        yield ConsoleServer(url, tokens, run["dag_run_id"], env)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium through Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


def logged_in_context(browser, server: ConsoleServer, user: str = "operator"):
    """A browser context holding Airflow's session cookie for ``user``, as the UI's login
    leaves it."""
    from urllib.parse import urlparse

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    host = urlparse(server.url).hostname
    context.add_cookies(
        [{"name": "_token", "value": server.tokens[user], "domain": host, "path": "/"}]
    )
    return context
