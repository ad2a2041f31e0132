"""One call per customer: which planned notices share a call, and that call's text.

Where the campaign file allows a pair of notice types (``merged_calls``, off unless a
campaign lists pairs), two notices of one customer planned on the same date are spoken
in one call: the pair's first type leads (its AI disclosure, greeting and closing), the
second follows with its own body, introduced by the locale's ``_next_notice.j2`` and
confirmed by its own key (``caller.second_confirm_key``). Both must be spoken by the same
voice profile in the same locale; a pair whose joint text cannot be composed is called
separately, as without merging.

In the ledger the second notice (the rider) keeps its own row, holding the lead's id in
``call_with``: it has no manifest item and no call attempt of its own (the caps count
one call), follows the lead's state changes (``ledger.transition``), and gets its own
outcome, from its own confirm key, when the call is settled.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from voice_notify.db import schema
from voice_notify.extract.fields import clean_notice
from voice_notify.ledger import LedgerState
from voice_notify.plan.campaigns import CampaignConfig
from voice_notify.plan.eligibility import Decision, notice_variables, text_context


@dataclass(frozen=True)
class MergedCall:
    """Two notices of one customer in one call.

    :param lead_segments: the lead's own segments, for when the call cannot be recorded
        merged after all (a row no longer waiting)
    """

    lead: int  # notice ids
    rider: int
    lead_segments: tuple[dict[str, Any], ...]


def merge_calls(
    notices: Iterable[Mapping[str, Any]],
    decisions: Sequence[Decision],
    pairs: Sequence[tuple[str, str]],
    config: CampaignConfig,
    composer: Any,
) -> tuple[list[Decision], list[MergedCall]]:
    """The decisions with each merged call's lead speaking the joint text (and its rider
    in the lead's voice), and the merged calls, in lead notice order.

    Each notice joins at most one call; within a customer the pairs are tried in the
    campaign file's order, notices in id order. ``notices`` are the extract's rows the
    decisions came from (their values make the joint text).
    """
    if not pairs:
        return list(decisions), []
    by_customer: dict[int, list[Decision]] = defaultdict(list)
    for decision in decisions:
        if decision.planned and decision.customer_id is not None:
            by_customer[decision.customer_id].append(decision)
    candidates = {d.notice_id for group in by_customer.values() if len(group) > 1 for d in group}
    if not candidates:
        return list(decisions), []
    rows = {}
    for raw in notices:
        notice = clean_notice(raw)
        if notice["notice_id"] in candidates:
            rows[notice["notice_id"]] = notice
    changed: dict[int, Decision] = {}
    merged: list[MergedCall] = []
    for group in by_customer.values():
        if len(group) < 2:
            continue
        used: set[int] = set()
        for first, second in pairs:
            leads = [d for d in group if d.notice_type == first and d.notice_id not in used]
            riders = [d for d in group if d.notice_type == second and d.notice_id not in used]
            for lead in leads:
                rider = next((r for r in riders if _can_share(lead, r, used)), None)
                if rider is None:
                    continue
                segments = _joint_segments(
                    rows[lead.notice_id], rows[rider.notice_id], lead, config, composer
                )
                if segments is None:
                    continue
                used.update((lead.notice_id, rider.notice_id))
                changed[lead.notice_id] = dataclasses.replace(lead, segments=segments)
                changed[rider.notice_id] = dataclasses.replace(
                    rider, voice=lead.voice, tone_rule=lead.tone_rule
                )
                merged.append(MergedCall(lead.notice_id, rider.notice_id, lead.segments))
    merged.sort(key=lambda call: call.lead)
    return [changed.get(d.notice_id, d) for d in decisions], merged


def _can_share(lead: Decision, rider: Decision, used: set[int]) -> bool:
    return (
        rider.notice_id not in used
        and rider.locale == lead.locale
        and rider.voice.profile == lead.voice.profile
    )


def _joint_segments(
    lead_row: Mapping[str, Any],
    rider_row: Mapping[str, Any],
    lead: Decision,
    config: CampaignConfig,
    composer: Any,
) -> tuple[dict[str, Any], ...] | None:
    """The merged call's segments; None when they cannot be composed (then no merge)."""
    from synthesis.text import NoticeTextError

    parts = []
    for row, key in ((lead_row, config.confirm_key), (rider_row, config.second_confirm_key)):
        variables = notice_variables(row)
        if variables is None:
            return None
        parts.append((row["notice_type"], variables, text_context(row, config, key)))
    try:
        composed = composer.compose_call(lead.locale, parts)
    except NoticeTextError:
        return None
    return tuple(segment.to_dict() for segment in composed.segments)


def record_merges(
    conn: sa.Connection,
    merged: Sequence[MergedCall],
    waiting: Sequence[sa.Row],
    config: CampaignConfig,
) -> tuple[set[int], list[MergedCall]]:
    """Mark the merged calls in the ledger: set-based, only on rows still ``planned``.

    A call is recorded when both its rows wait for synthesis; otherwise it is returned
    as not recorded (its lead then speaks its own text). A waiting row an earlier plan
    merged that this plan does not merge is set apart again. Returns the ledger ids of
    the riders (no manifest item of their own) and the calls not recorded.
    """
    rows = {row.notice_id: row for row in waiting}
    marks: dict[int, tuple[int | None, str | None]] = {}
    riders: set[int] = set()
    dropped: list[MergedCall] = []
    for call in merged:
        lead, rider = rows.get(call.lead), rows.get(call.rider)
        if lead is None or rider is None or lead.call_with is not None:
            dropped.append(call)
            continue
        marks[lead.id] = (None, config.confirm_key)
        marks[rider.id] = (lead.id, config.second_confirm_key)
        riders.add(rider.id)
    for row in waiting:
        if row.id not in marks and (row.call_with is not None or row.confirm_key is not None):
            marks[row.id] = (None, None)
    by_id = {row.id: row for row in waiting}
    changes = [
        {"b_id": ledger_id, "b_call_with": call_with, "b_confirm_key": key}
        for ledger_id, (call_with, key) in marks.items()
        # A re-run of the plan finds most rows as it left them: nothing to write.
        if (by_id[ledger_id].call_with, by_id[ledger_id].confirm_key) != (call_with, key)
    ]
    if changes:
        table = schema.dispatch_ledger
        conn.execute(
            table.update()
            .where(table.c.id == sa.bindparam("b_id"), table.c.state == LedgerState.PLANNED.value)
            .values(
                call_with=sa.bindparam("b_call_with"), confirm_key=sa.bindparam("b_confirm_key")
            ),
            changes,
        )
    return riders, dropped


def batch_riders(conn: sa.Connection, campaign_date: dt.date) -> int:
    """Put each rider without a batch into its lead's batch (the console lists a batch's
    notices; the dial step of that batch carries the call). Returns how many moved."""
    table = schema.dispatch_ledger
    lead = table.alias("lead")
    moves = [
        {"b_id": rider_id, "b_batch_key": batch_key}
        for rider_id, batch_key in conn.execute(
            sa.select(table.c.id, lead.c.batch_key)
            .join(lead, lead.c.id == table.c.call_with)
            .where(
                table.c.campaign_date == campaign_date,
                table.c.batch_key.is_(None),
                lead.c.batch_key.is_not(None),
            )
        )
    ]
    if moves:
        conn.execute(
            table.update()
            .where(table.c.id == sa.bindparam("b_id"), table.c.batch_key.is_(None))
            .values(batch_key=sa.bindparam("b_batch_key")),
            moves,
        )
    return len(moves)
