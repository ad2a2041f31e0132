-- Write-back 2/3: a notice leaves 'due' once (delivered, undelivered or
-- skipped, with the reason code), from the staged statuses in one statement.
-- The condition keeps a later re-run from rewriting a settled notice.
UPDATE notices
SET status = s.status,
    status_reason = s.status_reason,
    status_updated_at = s.status_updated_at
FROM vn_stage_notice_status AS s
WHERE notices.id = s.notice_id
  AND notices.status = 'due'
