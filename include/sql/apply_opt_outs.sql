-- Write-back 3/3: callees who pressed the opt-out key get no more voice notices.
UPDATE customers
SET voice_opt_out = TRUE
WHERE id IN (
    SELECT n.customer_id
    FROM notices AS n
    JOIN vn_stage_opt_outs AS s ON s.notice_id = n.id
)
