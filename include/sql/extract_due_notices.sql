-- Due notices for one campaign date: still 'due' in the CRM and due between the
-- campaign date and the furthest look-ahead of any notice type. The plan step
-- applies each type's own look-ahead. Edit joins and columns for your CRM; keep
-- the output column names. birth_year (or a birth_date column instead) is optional:
-- it picks the tone by age band (the campaign file's `tone`). voice_consent: the
-- customer's consent to automated calls, needed by notice types whose legal basis is
-- consent (without the column, those notices are skipped: no_customer_consent).
-- Ordered by customer: a customer's notices reach the plan together, so the campaign
-- file's merged_calls can speak them in one call.
SELECT
    n.id AS notice_id,
    n.notice_type,
    n.variables,
    n.due_date,
    c.id AS customer_id,
    c.name AS customer_name,
    c.phone,
    c.preferred_dialect,
    c.time_zone,
    c.voice_opt_out,
    c.voice_consent,
    c.birth_year
FROM notices n
JOIN customers c ON c.id = n.customer_id
WHERE n.status = 'due'
  AND n.due_date >= :campaign_date
  AND n.due_date <= :horizon_date
ORDER BY c.id, n.id
