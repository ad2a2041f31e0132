"""The notice console in a real Airflow API server, driven in headless Chromium.

Screenshots go to ``.artefacts/console/`` (``VOICE_NOTIFY_TEST_ARTEFACTS``): the list, a
notice's page, a preview, the campaign report, the console inside Airflow's own UI on a
DAG run, and the refusal an anonymous visitor gets.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa

from tests.console.conftest import artefacts_dir, logged_in_context
from voice_notify import ledger
from voice_notify.airflow.console_app import console_app
from voice_notify.db import schema

pytestmark = pytest.mark.integration
DAY = "2026-11-26"
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def _status(url: str, token: str | None = None, data: bytes | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_console_route_refuses_anonymous_and_unauthorized_callers(console_server):
    paths = {
        route.path.replace("{notice_id}", "50").replace("{kind}", "telephone")
        for route in console_app.routes
        if hasattr(route, "methods")
    }
    assert {"/notices", "/notices/50", "/preview", "/report", "/api/notices"} <= paths
    for path in sorted(paths):
        url = f"{console_server.console}{path}?date={DAY}"
        assert _status(url) == 401, path  # no credentials
        assert _status(url, token="not-a-jwt") == 403, path  # a forged token
    viewer = console_server.tokens["auditor"]
    assert _status(f"{console_server.console}/notices?date={DAY}", viewer) == 200
    # Reading is a viewer's right; the preview renders audio here: a trigger right.
    form = b"notice_type=repayment_reminder&locale=cmn&voice=standard&emotion=auto"
    assert _status(f"{console_server.console}/preview", viewer, data=form) == 403


def test_anonymous_browser_gets_no_customer_data(console_server, chromium):
    page = chromium.new_page()
    response = page.goto(f"{console_server.console}/notices/50?date={DAY}")
    assert response.status == 401
    assert "Not authenticated" in page.content()
    assert "notice" not in page.inner_text("body").lower()
    page.screenshot(path=artefacts_dir() / "anonymous-401.png")
    page.close()


def test_the_list_shows_every_notice_of_the_date(console_server, campaign_run, chromium):
    with campaign_run.engine().connect() as conn:
        rows = ledger.rows_for_date(conn, campaign_run.campaign_date)
    context = logged_in_context(chromium, console_server)
    page = context.new_page()
    page.goto(f"{console_server.console}/notices?date={DAY}")
    table = page.locator("#notices tr")
    assert table.count() == len(rows) + 1
    text = page.inner_text("body")
    assert f"{len(rows)} notices" in text
    for reason in {r.reason_code for r in rows if r.reason_code}:
        assert reason in text
    assert not PHONE.search(text)
    page.screenshot(path=artefacts_dir() / "notices.png", full_page=True)
    # One batch: what the link on a mapped dial task instance opens (the first batch;
    # a small campaign is cut into several, one per synthesis slot).
    page.goto(
        f"{console_server.console}/notices?dag_id=voice_notice_daily"
        f"&run_id={console_server.run_id}&task_id=batch.dial&map_index=0"
    )
    assert "batch-0000" in page.inner_text("h1")
    first = sum(1 for r in rows if r.batch_key and r.batch_key.endswith("/batch-0000.jsonl"))
    assert 0 < first < sum(1 for r in rows if r.batch_key)
    assert page.locator("#notices tr").count() == first + 1
    context.close()


def _called_notice(campaign_run) -> sa.Row:
    with campaign_run.engine().connect() as conn:
        rows = ledger.rows_for_date(conn, campaign_run.campaign_date)
        audited = dict(
            conn.execute(
                sa.select(
                    schema.notice_voice_audit.c.ledger_id, schema.notice_voice_audit.c.emotion
                )
            ).all()
        )
    called = [r for r in rows if r.state == "completed" and audited.get(r.id)]
    assert called
    return max(called, key=lambda r: (r.attempt, r.notice_id))


def test_a_notice_page_has_its_trail_voice_text_audio_calls_and_write_back(
    console_server, campaign_run, chromium
):
    row = _called_notice(campaign_run)
    context = logged_in_context(chromium, console_server)
    page = context.new_page()
    page.goto(f"{console_server.console}/notices/{row.notice_id}?date={DAY}")
    assert page.inner_text("#state") == "completed"
    trail = page.inner_text("#decision-trail")
    for check in ("notice_type", "legal_basis", "text", "voice", "tone", "calling_hours", "caps"):
        assert check in trail
    assert "plan at" in trail and "dial (attempt 1)" in trail
    voice = page.inner_text("#voice")
    assert "demo-agent" in voice and "demo-consent-" in voice
    assert page.inner_text("#emotion") in ("normal", "warm", "serious")
    assert page.inner_text("#spoken-text").startswith("本通话语音由人工智能合成")
    assert "<speak" in page.inner_text("#ssml")
    calls = page.inner_text("#calls")
    assert f"vn-{row.notice_id}-{DAY}-{row.attempt}" in calls
    assert "delivered" in page.inner_text("#write-back")
    assert not PHONE.search(page.inner_text("body"))
    # The telephone file plays: the browser fetched it through the console and decoded it.
    page.wait_for_function(
        "() => { const a = document.querySelector('#telephone'); "
        "return a && a.readyState >= 1 && a.duration > 1; }",
        timeout=30000,
    )
    played = page.evaluate(
        "async () => { const a = document.querySelector('#telephone'); a.muted = true;"
        " await a.play(); await new Promise(r => setTimeout(r, 400)); a.pause();"
        " return a.currentTime; }"
    )
    assert played > 0
    # The master is kept as FLAC (the worker's default) and served as such.
    master = context.request.get(
        f"{console_server.console}/notices/{row.notice_id}/audio/master?date={DAY}"
    )
    assert master.ok and master.headers["content-type"] == "audio/flac"
    assert master.body()[:4] == b"fLaC"
    page.screenshot(path=artefacts_dir() / "notice.png", full_page=True)
    context.close()


def test_preview_renders_text_gate_and_audio_and_writes_nothing(
    console_server, campaign_run, chromium
):
    def counts():
        with campaign_run.engine().connect() as conn:
            tables = (schema.dispatch_ledger, schema.call_attempts, schema.notice_decisions)
            db = [conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in tables]
        listed = campaign_run.s3_client().list_objects_v2(Bucket=campaign_run.bucket)
        return db, listed.get("KeyCount")

    before = counts()
    context = logged_in_context(chromium, console_server)
    page = context.new_page()
    page.goto(f"{console_server.console}/preview?notice_type=repayment_reminder")
    page.fill("input[name=age]", "72")
    page.click("#preview-button")
    page.wait_for_selector("#preview-player", timeout=180000)
    assert "示例银行" in page.inner_text("#preview-text")
    gate = page.inner_text("#gate")
    assert "plan at" in gate and "skip" not in gate
    # Repayment reminders speak serious, customers of 65 and over warm (campaign file).
    assert page.inner_text("#preview-emotion") == "warm"
    page.wait_for_function(
        "() => document.querySelector('#preview-player').duration > 1", timeout=30000
    )
    page.screenshot(path=artefacts_dir() / "preview.png", full_page=True)
    context.close()
    assert counts() == before


def test_report_page_and_console_inside_airflow_on_the_dag_run(console_server, chromium):
    context = logged_in_context(chromium, console_server)
    page = context.new_page()
    page.goto(
        f"{console_server.console}/report?dag_id=voice_notice_daily&run_id={console_server.run_id}"
    )
    assert "campaign 2026-11-26" in page.inner_text("h1")
    # Chart labels are not clipped: every SVG text lies inside its chart.
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('svg')].flatMap(svg => {
            const box = svg.viewBox.baseVal;
            return [...svg.querySelectorAll('text')].filter(t => {
                const b = t.getBBox();
                return b.x < -0.5 || b.y < -0.5 || b.x + b.width > box.width + 0.5
                    || b.y + b.height > box.height + 0.5;
            }).map(t => t.textContent);
        })"""
    )
    assert clipped == []
    page.screenshot(path=artefacts_dir() / "report.png", full_page=True)
    # The DAG run's tab, as an operator opens it in Airflow's UI.
    page.goto(
        f"{console_server.url}/dags/voice_notice_daily/runs/{console_server.run_id}"
        "/plugin/voice-notify-run-notices"
    )
    frame = page.frame_locator("iframe[title='Campaign notices']")
    frame.locator("#notices").wait_for(timeout=60000)
    assert "Notices of campaign 2026-11-26" in frame.locator("h1").inner_text()
    page.wait_for_timeout(500)
    page.screenshot(path=artefacts_dir() / "airflow-dag-run-tab.png")
    context.close()
