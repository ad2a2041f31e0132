-- MariaDB/MySQL form of write-back 1/3 (unique key uq_contact_attempt).
INSERT INTO contact_attempts
    (notice_id, campaign_date, attempt_no, call_id, outcome, key_pressed, audio_key, dialed_at, ended_at)
SELECT notice_id, campaign_date, attempt_no, call_id, outcome, key_pressed, audio_key, dialed_at, ended_at
FROM vn_stage_contact_attempts
ON DUPLICATE KEY UPDATE
    call_id = VALUES(call_id),
    outcome = VALUES(outcome),
    key_pressed = VALUES(key_pressed),
    audio_key = VALUES(audio_key),
    dialed_at = VALUES(dialed_at),
    ended_at = VALUES(ended_at)
