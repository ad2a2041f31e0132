"""The notice console: a FastAPI app the Airflow plugin mounts at ``/voice-notify-console``.

Airflow does not authenticate plugin apps, so this one does it with Airflow's own
machinery, on every route (an app-level dependency, so a new route cannot forget it):
the caller is the user of Airflow's JWT (the UI's ``_token`` cookie or an
``Authorization: Bearer`` header), and Airflow's auth manager must allow them to read the
runs of ``voice_notice_daily`` (``GET`` on its DAG runs); the preview, which renders audio
on this server, needs the right to trigger them (``POST``). No credentials: 401; not
allowed: 403. The pages themselves are ``voice_notify.console``.

Routes (relative to the mount):

- ``/notices?date=&batch=&state=&reason=&notice=`` the list; also ``?dag_id=&run_id=``
  (a DAG run: its logical date) and ``&map_index=`` (a mapped task: its batch);
- ``/notices/{notice_id}?date=`` one notice; ``/notices/{id}/audio/{telephone|master}``;
- ``/preview`` (GET form, POST result);
- ``/report?date=`` (or ``dag_id``/``run_id``) the stored campaign report,
  ``/report.json?date=``;
- ``/api/notices?date=...`` and ``/api/notices/{id}?date=`` the same as JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from voice_notify.airflow import hooks, storage
from voice_notify.settings import get_settings

log = logging.getLogger(__name__)

DAG_ID = "voice_notice_daily"
URL_PREFIX = "/voice-notify-console"


async def _authorize(request: Request, method: str) -> None:
    """Airflow's own user resolution and DAG-run authorization (imported here: only the
    API server needs them, and they are heavy for the other components loading plugins)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import (
        bearer_scheme,
        get_user,
        requires_access_dag,
    )

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    requires_access_dag(method, DagAccessEntity.RUN, param_dag_id=DAG_ID)(request, user)


async def require_read(request: Request) -> None:
    """May read the campaign's runs: every console route."""
    await _authorize(request, "GET")


async def require_trigger(request: Request) -> None:
    """May trigger the campaign's runs: the preview, which renders audio here."""
    await _authorize(request, "POST")


console_app = FastAPI(
    title="voice-notify notice console",
    dependencies=[Depends(require_read)],
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


def _base(request: Request) -> str:
    # Behind the mount the app sees its prefix as root_path.
    return request.scope.get("root_path", "").rstrip("/") or URL_PREFIX


def _ledger():
    return hooks.engine_for(get_settings().ledger_conn_id)


def _read_object(key: str) -> bytes | None:
    try:
        return storage.read_bytes(key)
    except Exception as exc:  # missing (retention, a fresh demo S3) or unreadable
        log.info("console: s3 object %s not readable: %s", key, type(exc).__name__)
        return None


def _crm_row(statement: str, notice_id: int) -> dict[str, Any] | None:
    from voice_notify.db.sql import load_sql

    engine = hooks.engine_for(get_settings().crm_conn_id)
    try:
        with engine.connect() as conn:
            row = (
                conn.execute(load_sql(statement, conn.dialect.name), {"notice_id": notice_id})
                .mappings()
                .first()
            )
    except Exception as exc:  # the console still shows the ledger's side
        log.warning("console: CRM query %s failed: %s", statement, exc)
        return None
    return dict(row) if row is not None else None


def _run_date(dag_id: str | None, run_id: str | None) -> dt.date | None:
    """The campaign date of a DAG run: its logical date, from Airflow's metadata DB."""
    if not run_id:
        return None
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        logical = session.scalar(
            select(DagRun.logical_date).where(
                DagRun.dag_id == (dag_id or DAG_ID), DagRun.run_id == run_id
            )
        )
    return dt.date(logical.year, logical.month, logical.day) if logical is not None else None


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise HTTPException(status_code=400, detail="date must be YYYY-MM-DD") from None


def _latest_date() -> dt.date | None:
    from voice_notify.console.queries import campaign_dates

    with _ledger().connect() as conn:
        dates = campaign_dates(conn, limit=1)
    return dates[0]["date"] if dates else None


def _resolve(request: Request) -> tuple[dt.date | None, str | None]:
    """The date and batch a request means: explicit, or from a DAG run and map index."""
    query = request.query_params
    day = _date(query.get("date"))
    batch = query.get("batch") or None
    dag_id, run_id = query.get("dag_id"), query.get("run_id")
    if day is None and run_id:
        day = _run_date(dag_id, run_id)
    map_index = query.get("map_index") or ""
    # Mapped tasks live in the daily DAG's batch group: batch.synthesize, batch.dial.
    task = (query.get("task_id") or "").rsplit(".", 1)[-1]
    if batch is None and day is not None and map_index.isdigit() and task in ("synthesize", "dial"):
        # The plan returns the date's batches in key order; the map index is the position.
        from voice_notify.console import queries

        with _ledger().connect() as conn:
            keys = [b["label"] for b in queries.batches_of(conn, day)]
        index = int(map_index)
        batch = keys[index] if index < len(keys) else None
    return day, batch


def _page(text: str | None) -> int:
    """A page number from the query; anything else is the first page."""
    return int(text) if text and text.isdigit() else 0


def _not_this_dag(request: Request) -> HTMLResponse | None:
    dag_id = request.query_params.get("dag_id")
    if dag_id and dag_id != DAG_ID:
        from voice_notify.console import pages

        return HTMLResponse(
            pages.message(
                _base(request),
                "Not a voice-notify campaign run",
                f"The notice console shows runs of {DAG_ID}; this is a run of {dag_id}.",
                link=f"{_base(request)}/notices",
                link_text="Open the notice console",
            )
        )
    return None


@console_app.get("/", include_in_schema=False)
def index(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_base(request)}/notices", status_code=307)


@console_app.get("/notices", response_class=HTMLResponse)
def notices(request: Request) -> HTMLResponse:
    from voice_notify.console import pages, queries

    other = _not_this_dag(request)
    if other is not None:
        return other
    day, batch = _resolve(request)
    day = day or _latest_date()
    base = _base(request)
    if day is None:
        text = "The ledger holds no campaign yet: run voice_notice_daily first."
        return HTMLResponse(pages.message(base, "No campaigns yet", text))
    notice = request.query_params.get("notice")
    f = queries.NoticeFilter(
        campaign_date=day,
        batch=batch,
        state=request.query_params.get("state") or None,
        reason=request.query_params.get("reason") or None,
        notice_id=int(notice) if notice and notice.isdigit() else None,
        page=_page(request.query_params.get("page")),
    )
    with _ledger().connect() as conn:
        listing = queries.list_notices(conn, f)
        dates = queries.campaign_dates(conn)
        batches = queries.batches_of(conn, day)
    if listing.total == 1 and f.notice_id is not None:
        return RedirectResponse(f"{base}/notices/{f.notice_id}?date={day}", status_code=303)

    def page_url(page: int) -> str:
        params = {k: v for k, v in request.query_params.items() if k != "page"}
        return f"{base}/notices?{urlencode({**params, 'date': day.isoformat(), 'page': page})}"

    return HTMLResponse(pages.notices(base, day, dates, batches, listing, page_url))


def _notice_page(notice_id: int, day: dt.date | None, *, with_crm: bool = True):
    from voice_notify.console import queries

    with _ledger().connect() as conn:
        return queries.notice_page(
            conn,
            notice_id,
            day,
            read_object=_read_object,
            crm_notice=(lambda n: _crm_row("console_crm_notice", n)) if with_crm else None,
        )


@console_app.get("/notices/{notice_id}", response_class=HTMLResponse)
def notice(request: Request, notice_id: int) -> HTMLResponse:
    from voice_notify.console import pages

    day, _ = _resolve(request)
    page = _notice_page(notice_id, day)
    if page is None:
        raise HTTPException(status_code=404, detail=f"notice {notice_id} is not in the ledger")
    return HTMLResponse(pages.notice(_base(request), page))


@console_app.get("/notices/{notice_id}/audio/{kind}")
def audio(request: Request, notice_id: int, kind: str) -> Response:
    """The telephone file or the master, streamed from S3 through this authenticated app
    (no presigned URL leaves Airflow)."""
    if kind not in ("telephone", "master"):
        raise HTTPException(status_code=404, detail="audio is telephone or master")
    day, _ = _resolve(request)
    page = _notice_page(notice_id, day, with_crm=False)
    if page is None:
        raise HTTPException(status_code=404, detail=f"notice {notice_id} is not in the ledger")
    key = page.synthesis["audio_key"] if kind == "telephone" else page.synthesis["master_key"]
    body = _read_object(key) if key else None
    if body is None:
        raise HTTPException(status_code=404, detail=f"no {kind} audio kept for this notice")
    return Response(
        body,
        # Masters are FLAC unless the worker kept them as WAV (VOICE_NOTIFY_KEEP_MASTER).
        media_type="audio/flac" if key.endswith(".flac") else "audio/wav",
        headers={"Cache-Control": "private, max-age=300", "Content-Disposition": "inline"},
    )


def _report_date(request: Request) -> dt.date:
    day, _ = _resolve(request)
    day = day or _latest_date()
    if day is None:
        raise HTTPException(status_code=404, detail="no campaign date")
    return day


@console_app.get("/report", response_class=HTMLResponse)
def report(request: Request) -> HTMLResponse:
    """The report the ``report`` task stored; built from the ledger when none is stored yet."""
    other = _not_this_dag(request)
    if other is not None:
        return other
    day = _report_date(request)
    stored = _read_object(storage.report_key(day).removesuffix(".json") + ".html")
    if stored is not None:
        page = stored.decode("utf-8")
    else:
        from voice_notify.report.campaign import load_report
        from voice_notify.report.html import render

        with _ledger().connect() as conn:
            page = render(load_report(conn, day))
    # The page links its JSON relatively; here it lives at report.json?date=...
    page = page.replace('href="report.json"', f'href="report.json?date={day.isoformat()}"')
    return HTMLResponse(page)


@console_app.get("/report.json")
def report_json(request: Request) -> JSONResponse:
    day = _report_date(request)
    stored = _read_object(storage.report_key(day))
    if stored is not None:
        return JSONResponse(json.loads(stored))
    from voice_notify.report.campaign import load_report

    with _ledger().connect() as conn:
        return JSONResponse(load_report(conn, day))


# -- preview -----------------------------------------------------------------------------------


def _preview_choices() -> tuple[list[str], list[str]]:
    from voice_notify.airflow.tasks import campaign_config
    from voice_notify.voices import registry

    with _ledger().connect() as conn:
        book = registry.load_consent_book(conn)
    return sorted(campaign_config().notice_types), ["auto", "standard", *sorted(book.profiles)]


def _default_form() -> dict[str, Any]:
    from voice_notify.console.preview import sample_variables

    notice_types, _ = _preview_choices()
    first = notice_types[0] if notice_types else ""
    catalogue = get_settings().include_dir / "notice_types.yaml"
    return {
        "notice_type": first,
        "locale": "cmn",
        "voice": "auto",
        "emotion": "auto",
        "customer_name": "王小明",
        "age": None,
        "variables": sample_variables(catalogue, first, dt.date.today()) if first else {},
        "notice_id": None,
    }


@console_app.get("/preview", response_class=HTMLResponse)
def preview_form(request: Request) -> HTMLResponse:
    from voice_notify.console import pages

    notice_types, voices = _preview_choices()
    form = _default_form()
    wanted = request.query_params.get("notice_type")
    if wanted in notice_types:
        from voice_notify.console.preview import sample_variables

        catalogue = get_settings().include_dir / "notice_types.yaml"
        form.update(notice_type=wanted, variables=sample_variables(catalogue, wanted, _today()))
    return HTMLResponse(pages.preview(_base(request), form, notice_types, voices))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _form_values(raw: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    form = _default_form()
    error = None
    for name in ("notice_type", "locale", "voice", "emotion", "customer_name"):
        if raw.get(name):
            form[name] = raw[name]
    try:
        form["variables"] = json.loads(raw.get("variables") or "{}")
        if not isinstance(form["variables"], dict):
            raise ValueError("not an object")
    except ValueError as exc:
        error = f"Variables must be a JSON object: {exc}"
    for name in ("age", "notice_id"):
        value = (raw.get(name) or "").strip()
        if value:
            if not value.isdigit():
                error = f"{name} must be a whole number"
            else:
                form[name] = int(value)
    return form, error


@console_app.post("/preview", response_class=HTMLResponse, dependencies=[Depends(require_trigger)])
async def preview(request: Request) -> HTMLResponse:
    from starlette.concurrency import run_in_threadpool

    from voice_notify.console import pages

    raw = {k: str(v) for k, v in (await request.form()).items()}
    form, error = _form_values(raw)
    notice_types, voices = _preview_choices()
    result = None
    if error is None:
        try:
            result = await run_in_threadpool(_run_preview, form)
        except LookupError as exc:
            error = str(exc)
    return HTMLResponse(
        pages.preview(_base(request), form, notice_types, voices, result, error=error)
    )


def _run_preview(form: dict[str, Any]):
    """The preview of one notice: plan, gates, markup and audio; nothing is written."""
    from synthesis.store import BatchStore
    from voice_notify.airflow.tasks import campaign_config
    from voice_notify.console import preview, queries
    from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164
    from voice_notify.plan import compliance, trail
    from voice_notify.report.audit import masked
    from voice_notify.voices import registry

    config, today = campaign_config(), _today()
    request = preview.PreviewRequest(
        notice_type=form["notice_type"],
        locale=form["locale"],
        voice=form["voice"],
        emotion=form["emotion"],
        variables=form["variables"],
        customer_name=form["customer_name"],
        age=form["age"],
        notice_id=form["notice_id"],
    )
    if request.notice_id is not None:
        notice = _crm_row("preview_notice", request.notice_id)
        if notice is None:
            raise LookupError(f"The CRM has no notice {request.notice_id}.")
    else:
        notice = preview.sample_notice(request, today)
    with _ledger().connect() as conn:
        book = registry.load_consent_book(conn)
        decision, plan_gate = preview.plan_notice(
            notice, request, composer=_composer(), config=config, book=book, on=today
        )
        dial_gate = None
        if request.notice_id is not None:
            try:
                number = to_e164(notice.get("phone"))
            except InvalidPhoneNumber:
                number = None
            blocked = bool(number) and bool(compliance.do_not_call_numbers(conn, [number]))
            now = dt.datetime.now(dt.UTC)
            since = (now - dt.timedelta(days=7)).replace(tzinfo=None)
            history = compliance.recent_attempts(conn, [notice.get("customer_id")], since)
            kind, reason, until = preview.dial_gate(
                notice,
                config=config,
                now=now,
                blocked=blocked,
                history=history.get(notice.get("customer_id"), []),
                still_due=notice.get("status", "due") == "due",
            )
            dial_gate = trail.dial_evaluation(
                _Attempt(notice["notice_id"], today),
                kind,
                reason,
                now.replace(tzinfo=None),
                until,
            )
    shown = {k: v for k, v in notice.items() if k not in ("phone",)}
    shown["phone"] = mask_phone(notice.get("phone"))
    consent = decision.consent
    result = preview.PreviewResult(
        request=request,
        notice=masked(json.loads(json.dumps(shown, default=str))),
        plan=plan_gate,
        dial=dial_gate,
        voice={
            "profile": decision.voice.profile,
            "emotion": decision.voice.emotion
            or ("normal" if decision.voice.profile != "standard" else None),
            "tone_rule": decision.tone_rule,
            "consent_id": consent.consent_id if consent is not None and consent.allowed else None,
        },
        item=None,
    )
    if not decision.planned:
        return result
    item = preview.batch_item(decision, today)
    result.item = item
    result.text = queries.markup(item.segments)
    store = preview.PreviewStore(BatchStore(get_settings().bucket, storage.s3_hook().get_conn()))
    engine = get_settings().synthesis_fallback_engine  # the API server renders on CPU
    result.audio, result.synthesis = preview.synthesize(item, store, engine)
    return result


def _composer():
    # The tasks' composer (one per process): the preview renders as the plan does.
    from voice_notify.airflow.tasks import _composer as tasks_composer

    return tasks_composer()


@dataclasses.dataclass(frozen=True)
class _Attempt:
    notice_id: int
    campaign_date: dt.date
    attempt: int = 1


# -- JSON ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@console_app.get("/api/notices")
def api_notices(request: Request) -> JSONResponse:
    from voice_notify.console import queries

    day, batch = _resolve(request)
    day = day or _latest_date()
    if day is None:
        return JSONResponse({"campaign_date": None, "notices": []})
    f = queries.NoticeFilter(
        campaign_date=day,
        batch=batch,
        state=request.query_params.get("state") or None,
        reason=request.query_params.get("reason") or None,
    )
    with _ledger().connect() as conn:
        listing = queries.list_notices(conn, f)
    return JSONResponse(
        _jsonable(
            {
                "campaign_date": day,
                "batch": batch,
                "total": listing.total,
                "by_state": listing.by_state,
                "notices": listing.rows,
            }
        )
    )


@console_app.get("/api/notices/{notice_id}")
def api_notice(request: Request, notice_id: int) -> JSONResponse:
    day, _ = _resolve(request)
    page = _notice_page(notice_id, day)
    if page is None:
        raise HTTPException(status_code=404, detail=f"notice {notice_id} is not in the ledger")
    return JSONResponse(_jsonable(dataclasses.asdict(page)))
