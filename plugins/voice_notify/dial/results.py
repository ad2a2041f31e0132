"""A batch's synthesis results into the ledger: planned rows become synthesized or failed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from synthesis.manifest import ResultItem
from voice_notify import ledger
from voice_notify.dial.dialer import DialCounts
from voice_notify.ledger import LedgerState
from voice_notify.reasons import SYNTHESIS_PREFIX, Reason
from voice_notify.report import audit

log = logging.getLogger(__name__)


def record_synthesis(
    conn: sa.Connection, rows: Sequence[sa.Row], results: Mapping[int, ResultItem]
) -> DialCounts:
    """Move a batch's planned rows to synthesized or failed from the worker's results, and
    put each moved row's result into the audit (``notice_voice_audit``) in one go."""
    counts = DialCounts()
    recorded: list[tuple[sa.Row, ResultItem]] = []
    for row in rows:
        if row.state != LedgerState.PLANNED or getattr(row, "call_with", None) is not None:
            continue  # a merged call's second notice moves with its lead (no item of its own)
        result = results.get(row.id)
        if result is None:
            reason = Reason.SYNTHESIS_RESULT_MISSING
        elif result.status == "ok":
            moved = ledger.transition(
                conn,
                row.id,
                LedgerState.SYNTHESIZED,
                from_states=[LedgerState.PLANNED],
                audio_key=result.audio_key,
                engine=result.engine,
                seed=result.seed,
            )
            if moved:
                recorded.append((row, result))
            counts.synthesized += 1
            continue
        else:
            reason = SYNTHESIS_PREFIX + (result.error_code or "unknown")
        moved = ledger.transition(conn, row.id, LedgerState.FAILED, reason_code=reason[:64])
        if moved and result is not None:
            recorded.append((row, result))
        counts.synthesis_failed += 1
        log.info("notice %s: failed reason=%s", row.notice_id, reason)
    # Only rows this call moved: a retry's resumed result never replaces the figures of
    # the rendering that made the audio.
    audit.record_synthesis(conn, recorded)
    return counts
