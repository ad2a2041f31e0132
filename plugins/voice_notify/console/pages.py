"""The console's pages: Jinja templates in ``templates/`` (autoescaped), filled here."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from voice_notify.console.queries import NoticeList, NoticePage
from voice_notify.report.html import environment

STATES = ("planned", "synthesized", "dialing", "dialed", "completed", "failed", "skipped")


def _render(name: str, **context: Any) -> str:
    context.setdefault("date", None)
    context.setdefault("nav", "")
    return environment().get_template(name).render(**context)


def notices(
    base: str,
    campaign_date: dt.date,
    dates: Sequence[dict[str, Any]],
    batches: Sequence[dict[str, Any]],
    listing: NoticeList,
    page_url: Callable[[int], str],
) -> str:
    return _render(
        "notices.html.j2",
        base=base,
        date=campaign_date,
        dates=dates,
        batches=batches,
        listing=listing,
        states=STATES,
        page_url=page_url,
        nav="notices",
    )


def notice(base: str, page: NoticePage) -> str:
    date = page.ledger["campaign_date"]
    date = dt.date.fromisoformat(date[:10]) if isinstance(date, str) else date
    return _render("notice.html.j2", base=base, date=date, p=page, nav="notices")


def message(
    base: str,
    heading: str,
    text: str,
    *,
    link: str | None = None,
    link_text: str = "",
    campaign_date: dt.date | None = None,
) -> str:
    return _render(
        "message.html.j2",
        base=base,
        heading=heading,
        message=text,
        link=link,
        link_text=link_text,
        date=campaign_date,
    )


def preview(
    base: str,
    form: dict[str, Any],
    notice_types: Sequence[str],
    voices: Sequence[str],
    result: Any = None,
    error: str | None = None,
) -> str:
    audio_uri = None
    if result is not None and result.audio:
        audio_uri = "data:audio/wav;base64," + base64.b64encode(result.audio).decode("ascii")
    form = {**form, "variables_json": json.dumps(form.get("variables", {}), ensure_ascii=False)}
    return _render(
        "preview.html.j2",
        base=base,
        form=form,
        notice_types=notice_types,
        voices=voices,
        result=result,
        audio_uri=audio_uri,
        error=error,
        nav="preview",
    )
