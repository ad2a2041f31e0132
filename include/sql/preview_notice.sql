-- The notice console's preview of a real notice: one notice with the columns the
-- extract gives the plan (extract_due_notices.sql), whatever its status or due date,
-- plus that status. Edit joins and columns for your CRM; keep the output names.
SELECT
    n.id AS notice_id,
    n.notice_type,
    n.variables,
    n.due_date,
    n.status,
    c.id AS customer_id,
    c.name AS customer_name,
    c.phone,
    c.preferred_dialect,
    c.time_zone,
    c.voice_opt_out,
    c.birth_year
FROM notices n
JOIN customers c ON c.id = n.customer_id
WHERE n.id = :notice_id
