-- A notice leaves 'due' once: delivered, undelivered or skipped, with the reason
-- code. The condition keeps a later re-run from rewriting a settled notice.
UPDATE notices
SET status = :status,
    status_reason = :status_reason,
    status_updated_at = :status_updated_at
WHERE id = :notice_id
  AND status = 'due'
