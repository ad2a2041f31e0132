-- Write-back 1/3: one contact_attempts row per call attempt, keyed on (notice,
-- campaign date, attempt), merged from the staged outcomes in one statement;
-- a re-run updates the rows instead of adding more. Edit the target table and
-- columns for your CRM; the staging table vn_stage_contact_attempts has the
-- columns listed here.
INSERT INTO contact_attempts
    (notice_id, campaign_date, attempt_no, call_id, outcome, key_pressed, audio_key, dialed_at, ended_at)
SELECT notice_id, campaign_date, attempt_no, call_id, outcome, key_pressed, audio_key, dialed_at, ended_at
FROM vn_stage_contact_attempts
WHERE TRUE
ON CONFLICT (notice_id, campaign_date, attempt_no) DO UPDATE SET
    call_id = excluded.call_id,
    outcome = excluded.outcome,
    key_pressed = excluded.key_pressed,
    audio_key = excluded.audio_key,
    dialed_at = excluded.dialed_at,
    ended_at = excluded.ended_at
