-- MariaDB/MySQL form of write-back 2/3.
UPDATE notices AS n
JOIN vn_stage_notice_status AS s ON n.id = s.notice_id
SET n.status = s.status,
    n.status_reason = s.status_reason,
    n.status_updated_at = s.status_updated_at
WHERE n.status = 'due'
