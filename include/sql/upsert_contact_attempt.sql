-- One row per call attempt, keyed on (notice, campaign date, attempt), so a
-- re-run of the write-back updates the row instead of adding another.
INSERT INTO contact_attempts
    (notice_id, campaign_date, attempt_no, call_id, outcome, key_pressed, audio_key, dialed_at, ended_at)
VALUES
    (:notice_id, :campaign_date, :attempt_no, :call_id, :outcome, :key_pressed, :audio_key, :dialed_at, :ended_at)
ON CONFLICT (notice_id, campaign_date, attempt_no) DO UPDATE SET
    call_id = excluded.call_id,
    outcome = excluded.outcome,
    key_pressed = excluded.key_pressed,
    audio_key = excluded.audio_key,
    dialed_at = excluded.dialed_at,
    ended_at = excluded.ended_at
