"""The extract step: the CRM's due notices for a campaign date.

The query is the deployment's own (``include/sql/extract_due_notices.sql``, with a
per-dialect override where its CRM needs one): voice-notify needs its columns, not the
CRM's schema. Rows come out as plain dictionaries, ready to snapshot as JSON lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from voice_notify.db.sql import load_sql
from voice_notify.plan.campaigns import CampaignConfig


def horizon(campaign_date: dt.date, config: CampaignConfig) -> dt.date:
    """The last due date any notice type of the campaign file looks ahead to."""
    return campaign_date + dt.timedelta(days=config.max_lookahead_days)


def due_notices(
    conn: sa.Connection, campaign_date: dt.date, config: CampaignConfig
) -> Iterator[dict[str, Any]]:
    """The CRM's notices due from the campaign date to the horizon, one dict per row."""
    statement = load_sql("extract_due_notices", conn.dialect.name)
    params = {"campaign_date": campaign_date, "horizon_date": horizon(campaign_date, config)}
    for row in conn.execute(statement, params):
        yield dict(row._mapping)
