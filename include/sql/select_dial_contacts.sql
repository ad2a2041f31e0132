-- Just before dialing: the current phone number and opt-out flag of each
-- notice's customer (a customer may have opted out since the plan).
SELECT
    n.id AS notice_id,
    n.status,
    c.phone,
    c.voice_opt_out,
    c.time_zone
FROM notices n
JOIN customers c ON c.id = n.customer_id
WHERE n.id IN :notice_ids
