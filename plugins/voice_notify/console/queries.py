"""What the notice console shows, read from the ledger database (and S3 and the CRM through
callables the Airflow side passes in, so this module needs neither).

A notice's page is everything the pipeline recorded about it on one campaign date: the
ledger row, the decision trail (``notice_decisions``), the voice, its emotion variant and
the consent relied on (``notice_voice_audit``, ``voice_consents``), the text and the markup
each engine was given (the batch manifest), the audio, every call attempt with its
gateway events and key presses, and what the write-back gives the CRM.

Calls: a call carries its own notice, and in a merged call (one call per customer, the
campaign file's ``merged_calls``) the notices riding in it (``call_with``). A rider's page
shows the call's text, audio and attempts (the lead's), its own voice choice and consent,
and its own outcome and write-back; :func:`notices_on_calls` lists every notice a call
carried.

Nothing here shows a phone number: the CRM's number is masked before it leaves this module,
and every id is passed through the same masking the audit CLI uses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from synthesis.manifest import BatchItem, parse_lines
from voice_notify.db import schema
from voice_notify.ledger import riders_of as ledger_riders
from voice_notify.phone import mask_phone
from voice_notify.plan import trail
from voice_notify.report.audit import masked as _masked

ObjectReader = Callable[[str], bytes | None]

PAGE_SIZE = 200


def batch_label(batch_key: str | None) -> str | None:
    """``batch-0003`` for ``campaigns/<date>/<campaign>/batches/batch-0003.jsonl``."""
    if not batch_key:
        return None
    return batch_key.rsplit("/", 1)[-1].removesuffix(".jsonl")


def campaign_dates(conn: sa.Connection, limit: int = 60) -> list[dict[str, Any]]:
    """The most recent campaign dates with how many notices each holds."""
    ledger = schema.dispatch_ledger
    rows = conn.execute(
        sa.select(ledger.c.campaign_date, sa.func.count())
        .group_by(ledger.c.campaign_date)
        .order_by(ledger.c.campaign_date.desc())
        .limit(limit)
    )
    return [{"date": _as_date(day), "notices": n} for day, n in rows]


def batches_of(conn: sa.Connection, campaign_date: dt.date) -> list[dict[str, Any]]:
    """The batches of a date: label, manifest key, notices."""
    ledger = schema.dispatch_ledger
    rows = conn.execute(
        sa.select(ledger.c.batch_key, sa.func.count())
        .where(ledger.c.campaign_date == campaign_date, ledger.c.batch_key.is_not(None))
        .group_by(ledger.c.batch_key)
        .order_by(ledger.c.batch_key)
    )
    return [{"label": batch_label(key), "key": key, "notices": n} for key, n in rows]


@dataclass(frozen=True)
class NoticeFilter:
    """The list's filters: a campaign date and optionally a batch, state, reason, notice."""

    campaign_date: dt.date
    batch: str | None = None  # a batch label (batch-0003) or manifest key
    state: str | None = None
    reason: str | None = None
    notice_id: int | None = None
    page: int = 0


@dataclass
class NoticeList:
    filter: NoticeFilter
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def _where(query: sa.Select, f: NoticeFilter) -> sa.Select:
    ledger = schema.dispatch_ledger
    query = query.where(ledger.c.campaign_date == f.campaign_date)
    if f.batch:
        if "/" in f.batch:
            query = query.where(ledger.c.batch_key == f.batch)
        else:
            query = query.where(ledger.c.batch_key.like(f"%/{f.batch}.jsonl"))
    if f.state:
        query = query.where(ledger.c.state == f.state)
    if f.reason:
        query = query.where(sa.or_(ledger.c.reason_code == f.reason, ledger.c.outcome == f.reason))
    if f.notice_id is not None:
        query = query.where(ledger.c.notice_id == f.notice_id)
    return query


def list_notices(conn: sa.Connection, f: NoticeFilter) -> NoticeList:
    """One page of a date's notices with state, reason, outcome, attempts, voice and tone."""
    ledger, audit = schema.dispatch_ledger, schema.notice_voice_audit
    result = NoticeList(f)
    for column, target in ((ledger.c.state, result.by_state), (ledger.c.reason_code, None)):
        query = _where(sa.select(column, sa.func.count()).group_by(column), f)
        counts = {str(k): int(n) for k, n in conn.execute(query) if k is not None}
        if target is None:
            result.by_reason = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        else:
            target.update(sorted(counts.items()))
    result.total = sum(result.by_state.values())
    query = _where(
        sa.select(
            ledger.c.id,
            ledger.c.notice_id,
            ledger.c.notice_type,
            ledger.c.locale,
            ledger.c.state,
            ledger.c.reason_code,
            ledger.c.outcome,
            ledger.c.attempt,
            ledger.c.batch_key,
            ledger.c.key_pressed,
            audit.c.voice_profile,
            audit.c.emotion,
            audit.c.fallback,
        ).select_from(ledger.outerjoin(audit, audit.c.ledger_id == ledger.c.id)),
        f,
    )
    query = query.order_by(ledger.c.notice_id).limit(PAGE_SIZE).offset(f.page * PAGE_SIZE)
    attempts = _attempt_counts(conn, f.campaign_date)
    for row in conn.execute(query).mappings():
        record = dict(row)
        record["batch"] = batch_label(row["batch_key"])
        record["calls"] = attempts.get(row["id"], 0)
        result.rows.append(record)
    return result


def _attempt_counts(conn: sa.Connection, campaign_date: dt.date) -> dict[int, int]:
    attempts = schema.call_attempts
    query = (
        sa.select(attempts.c.ledger_id, sa.func.count())
        .where(attempts.c.campaign_date == campaign_date)
        .group_by(attempts.c.ledger_id)
    )
    return dict(conn.execute(query).all())


# -- one notice ------------------------------------------------------------------------------


@dataclass
class NoticePage:
    """Everything the console shows about one notice on one campaign date."""

    ledger: dict[str, Any]
    batch: str | None
    trail: list[trail.GateEvaluation]
    voice: dict[str, Any]
    synthesis: dict[str, Any]
    attempts: list[dict[str, Any]]
    write_back: dict[str, Any]
    text: dict[str, Any] | None = None
    crm: dict[str, Any] | None = None
    dates: list[dt.date] = field(default_factory=list)  # other dates of this notice
    # A merged call: the notice that leads it and the notices riding in it (None: alone).
    merged_call: dict[str, Any] | None = None


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return value


def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def notice_page(
    conn: sa.Connection,
    notice_id: int,
    campaign_date: dt.date | None = None,
    *,
    read_object: ObjectReader | None = None,
    crm_notice: Callable[[int], Mapping[str, Any] | None] | None = None,
) -> NoticePage | None:
    """The page of a notice on a date (None: the ledger has no such notice and date).

    Without ``campaign_date`` the most recent date the notice was planned on is shown.

    :param read_object: reads an S3 key (None when it is gone): the batch manifest
    :param crm_notice: the CRM's row for the notice (``console_crm_notice.sql``)
    """
    ledger = schema.dispatch_ledger
    dates = [
        _as_date(d)
        for d in conn.execute(
            sa.select(ledger.c.campaign_date)
            .where(ledger.c.notice_id == notice_id)
            .order_by(ledger.c.campaign_date.desc())
        ).scalars()
    ]
    if not dates:
        return None
    campaign_date = campaign_date or dates[0]
    row = (
        conn.execute(
            sa.select(ledger).where(
                ledger.c.notice_id == notice_id, ledger.c.campaign_date == campaign_date
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    # A merged call's text, audio and attempts are its lead's row's.
    call_row = row
    if row["call_with"] is not None:
        call_row = conn.execute(sa.select(ledger).where(ledger.c.id == row["call_with"]))
        call_row = call_row.mappings().first() or row
    voice, synthesis = _voice_and_synthesis(conn, row)
    if call_row is not row:
        _, synthesis = _voice_and_synthesis(conn, {**call_row, "audio_key": row["audio_key"]})
    attempts = _attempts(conn, call_row)
    page = NoticePage(
        ledger=_masked(dict(row)),
        batch=batch_label(row["batch_key"]),
        trail=trail.trail_of(conn, notice_id, campaign_date),
        voice=voice,
        synthesis=synthesis,
        attempts=attempts,
        write_back=_write_back(row, attempts),
        dates=dates,
        merged_call=_merged_call(conn, row, call_row),
    )
    if read_object is not None and call_row["batch_key"]:
        page.text = notice_text(read_object, call_row["batch_key"], call_row["id"], synthesis)
    if crm_notice is not None:
        page.crm = _crm(crm_notice(notice_id))
    return page


def _voice_and_synthesis(conn: sa.Connection, row: Mapping[str, Any]) -> tuple[dict, dict]:
    audit, consents = schema.notice_voice_audit, schema.voice_consents
    found = (
        conn.execute(
            sa.select(
                audit,
                consents.c.consented_by,
                consents.c.granted_on,
                consents.c.expires_on,
                consents.c.document_ref,
                consents.c.revoked_at,
                consents.c.revoked_reason,
            )
            .select_from(audit.outerjoin(consents, consents.c.consent_id == audit.c.consent_id))
            .where(audit.c.ledger_id == row["id"])
        )
        .mappings()
        .first()
    )
    found = dict(found) if found is not None else {}
    deleted = _deletions(conn, [row["audio_key"], found.get("master_key")])
    voice = {
        "profile": found.get("voice_profile"),
        "emotion": found.get("emotion"),
        "tone_rule": found.get("tone_rule"),
        "instruct": found.get("instruct"),
        "consent_id": found.get("consent_id"),
        "consented_by": found.get("consented_by"),
        "consent_granted_on": found.get("granted_on"),
        "consent_expires_on": found.get("expires_on"),
        "consent_document_ref": found.get("document_ref"),
        "consent_revoked_at": found.get("revoked_at"),
        "consent_revoked_reason": found.get("revoked_reason"),
    }
    synthesis = {
        "status": found.get("synthesis_status"),
        "error_code": found.get("error_code"),
        "engine": found.get("engine") or row["engine"],
        "seed": found.get("seed") if found.get("seed") is not None else row["seed"],
        "fallback": found.get("fallback"),
        "resumed": found.get("resumed"),
        "render_attempts": found.get("render_attempts"),
        "duration_s": found.get("duration_s"),
        "synth_seconds": found.get("synth_seconds"),
        "speech_audio_s": found.get("speech_audio_s"),
        "cached_audio_s": found.get("cached_audio_s"),
        "labels": _json(found.get("labels")),
        "qc": _json(found.get("qc")),
        "audio_key": row["audio_key"],
        "master_key": found.get("master_key"),
        "audio_deleted_at": deleted.get(row["audio_key"]),
        "master_deleted_at": deleted.get(found.get("master_key")),
    }
    return _masked(voice), _masked(synthesis)


def _deletions(conn: sa.Connection, keys: Sequence[str | None]) -> dict[str, Any]:
    wanted = [k for k in keys if k]
    if not wanted:
        return {}
    table = schema.audio_deletions
    rows = conn.execute(
        sa.select(table.c.object_key, sa.func.max(table.c.deleted_at))
        .where(table.c.object_key.in_(wanted), table.c.deleted_at.is_not(None))
        .group_by(table.c.object_key)
    )
    return dict(rows.all())


def _merged_call(
    conn: sa.Connection, row: Mapping[str, Any], call_row: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The merged call this row is part of: its lead and riders (None: a call of its own)."""
    riders = ledger_riders(conn, [call_row["id"]]).get(call_row["id"], [])
    if not riders:
        return None
    return {
        "lead": call_row["notice_id"],
        "riders": [r.notice_id for r in riders],
        "is_lead": row["id"] == call_row["id"],
        "confirm_key": row["confirm_key"],
    }


def notices_on_calls(conn: sa.Connection, attempts: Sequence[Mapping[str, Any]]) -> dict:
    """The notices each call attempt carried, by attempt id: its own notice, then those a
    merged call carried with it."""
    riders = ledger_riders(conn, sorted({a["ledger_id"] for a in attempts}))
    return {
        a["id"]: [a["notice_id"], *(r.notice_id for r in riders.get(a["ledger_id"], []))]
        for a in attempts
    }


def _attempts(conn: sa.Connection, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    attempts, events = schema.call_attempts, schema.call_events
    found = [
        dict(a)
        for a in conn.execute(
            sa.select(attempts)
            .where(attempts.c.ledger_id == row["id"])
            .order_by(attempts.c.attempt)
        ).mappings()
    ]
    call_ids = [a["call_id"] for a in found if a["call_id"]]
    by_call: dict[str, list[dict[str, Any]]] = {}
    if call_ids:
        for event in conn.execute(
            sa.select(events)
            .where(events.c.call_id.in_(call_ids))
            .order_by(events.c.call_id, events.c.sequence)
        ).mappings():
            by_call.setdefault(event["call_id"], []).append(dict(event))
    carried = notices_on_calls(conn, found)
    for attempt in found:
        attempt["events"] = by_call.get(attempt["call_id"], [])
        attempt["key_presses"] = [e["key_pressed"] for e in attempt["events"] if e["key_pressed"]]
        if attempt["key_pressed"] and not attempt["key_presses"]:
            attempt["key_presses"] = [attempt["key_pressed"]]  # polled, no callback events
        attempt["notices"] = carried[attempt["id"]]
    return [_masked(a) for a in found]


def _write_back(row: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]) -> dict:
    """What the CRM write-back derives from this ledger row and its ended attempts."""
    from voice_notify.settle.writeback import build_write_back

    class _Row:
        def __init__(self, values: Mapping[str, Any]) -> None:
            self.__dict__.update(values)

    plan = build_write_back([_Row(row)], [_Row(a) for a in attempts])
    # A merged call's attempts are its lead's: this notice's own contact attempts only.
    own = [a for a in plan.attempts if a["notice_id"] == row["notice_id"]]
    return _masked(
        {"status": plan.statuses, "contact_attempts": own, "opt_out": bool(plan.opt_outs)}
    )


def _crm(notice: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if notice is None:
        return None
    values = dict(notice)
    if "phone" in values:
        values["phone"] = mask_phone(values["phone"])
    return _masked(values)


# -- text and markup --------------------------------------------------------------------------


def manifest_item(payload: bytes, ledger_id: int) -> BatchItem | None:
    for line in parse_lines(payload):
        item = BatchItem.from_json(line)
        if item.ledger_id == ledger_id:
            return item
    return None


def markup(segments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The text as spoken (the AI label first, as the worker adds it) and the markup each
    engine is given: CosyVoice3's text with pronunciation tokens, espeak-ng's voice and
    phoneme-marked text, and SSML."""
    from synthesis.labels import is_spoken_label, label_segment
    from synthesis.text import Segment, render_cosyvoice3, render_espeak, render_ssml
    from synthesis.text.render.ssml import render_ssml_document

    parsed = [Segment.from_dict(s) for s in segments]
    if parsed and not is_spoken_label(parsed[0]):
        parsed.insert(0, label_segment(parsed[0].lang))
    try:
        cosyvoice = [render_cosyvoice3(s) for s in parsed]
    except FileNotFoundError as exc:  # no token inventory on this deployment
        cosyvoice = [f"({exc})"]
    return {
        "text": "".join(s.text for s in parsed),
        "segments": [
            {
                "text": s.text,
                "lang": s.lang,
                "overrides": [f"{s.text[a:b]}→{r}" for a, b, r in s.overrides],
                "pause_after_ms": s.pause_after_ms,
                "ssml": render_ssml(s),
            }
            for s in parsed
        ],
        "cosyvoice3": cosyvoice,
        "espeak": [" ".join(render_espeak(s)) for s in parsed],
        "ssml": render_ssml_document(parsed),
    }


def notice_text(
    read_object: ObjectReader, batch_key: str, ledger_id: int, synthesis: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The rendered text and markup of a notice from its batch manifest (None: gone)."""
    payload = read_object(batch_key)
    if payload is None:
        return {"missing": batch_key}
    item = manifest_item(payload, ledger_id)
    if item is None:
        return {"missing": batch_key}
    out = markup(item.segments)
    out["voice"] = {
        "profile": item.voice.profile,
        "instruct": item.voice.instruct,
        "emotion": getattr(item.voice, "emotion", None),
    }
    out["seed"] = item.seed
    out["engine_used"] = synthesis.get("engine")
    out["fallback"] = synthesis.get("fallback")
    return out
