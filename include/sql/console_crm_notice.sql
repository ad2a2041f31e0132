-- The notice console: one notice's CRM row as it is now (its status after the
-- write-back, the customer's phone, which the console masks before showing it, and
-- the opt-out flag). Edit joins and columns for your CRM; keep the output names.
SELECT
    n.id AS notice_id,
    n.status,
    n.status_reason,
    n.status_updated_at,
    c.phone,
    c.voice_opt_out
FROM notices n
JOIN customers c ON c.id = n.customer_id
WHERE n.id = :notice_id
