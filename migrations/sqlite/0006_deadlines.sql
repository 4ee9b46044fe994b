-- Deadlines (GDPR Art. 12(3)): one extension of a request's deadline by one or two further
-- months, with the reason the subject is told, decided within the first month after receipt.
-- `due_at` holds the deadline in force; `original_due_at` keeps the one-month deadline it
-- replaced. All five columns are set together, once, or not at all.
ALTER TABLE requests ADD COLUMN original_due_at TEXT;
ALTER TABLE requests ADD COLUMN extended_at TEXT;
ALTER TABLE requests ADD COLUMN extended_by TEXT;
ALTER TABLE requests ADD COLUMN extension_months BIGINT;
ALTER TABLE requests ADD COLUMN extension_reason TEXT;

-- `GET /v1/requests?overdue=true|due_before=…` and the overdue metric read by due date.
CREATE INDEX requests_due ON requests (due_at);
