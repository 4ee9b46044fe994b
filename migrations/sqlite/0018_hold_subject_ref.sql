-- A subject hold also names the subject by the keyring's keyed reference (the HMAC the
-- locator index and the key store use), so an erasure can recognise, in a shared row (a
-- message between two subjects), the other subject as held and keep the row whole
-- (GDPR Art. 17(3)(e)). Holds placed before this migration have none: they still keep
-- everything of their own subject, but not the rows other subjects share with them.
ALTER TABLE legal_holds ADD COLUMN subject_ref TEXT;
