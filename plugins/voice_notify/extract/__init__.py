"""The extract step: the CRM's due notices for a campaign date.

The query is the deployment's own (``include/sql/extract_due_notices.sql``, with a
per-dialect override where its CRM needs one): voice-notify needs its columns, not the
CRM's schema. Rows come out as plain dictionaries, ready to snapshot as JSON lines,
each field read to its type where it enters (``fields.clean_notice``): a field that has
none gives the row its skip reason, and nothing stops the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from voice_notify.db.sql import load_sql
from voice_notify.extract.fields import clean_notice
from voice_notify.logsafe import escape
from voice_notify.plan.campaigns import CampaignConfig

log = logging.getLogger(__name__)


def horizon(campaign_date: dt.date, config: CampaignConfig) -> dt.date:
    """The last due date any notice type of the campaign file looks ahead to."""
    return campaign_date + dt.timedelta(days=config.max_lookahead_days)


def due_notices(
    conn: sa.Connection, campaign_date: dt.date, config: CampaignConfig
) -> Iterator[dict[str, Any]]:
    """The CRM's notices due from the campaign date to the horizon, one clean dict per row.

    A row without a usable notice id cannot be recorded anywhere: it is left out and
    logged with reason ``invalid_notice_id``.
    """
    statement = load_sql("extract_due_notices", conn.dialect.name)
    params = {"campaign_date": campaign_date, "horizon_date": horizon(campaign_date, config)}
    for row in conn.execute(statement, params):
        notice = clean_notice(row._mapping)
        if notice["notice_id"] is None:
            log.warning(
                "a due notice without a usable id (%s) left out: reason=invalid_notice_id",
                escape(row._mapping.get("notice_id"), 40),
            )
            continue
        yield notice
