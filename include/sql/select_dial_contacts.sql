-- Just before dialing: the current phone number, opt-out flag and consent of each
-- notice's customer (a customer may have opted out or withdrawn consent since the plan).
SELECT
    n.id AS notice_id,
    n.status,
    c.phone,
    c.voice_opt_out,
    c.voice_consent,
    c.time_zone
FROM notices n
JOIN customers c ON c.id = n.customer_id
WHERE n.id IN :notice_ids
