-- The callee pressed the opt-out key: no more voice notices for this customer.
UPDATE customers
SET voice_opt_out = TRUE
WHERE id = (SELECT customer_id FROM notices WHERE id = :notice_id)
