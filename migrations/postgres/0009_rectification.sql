-- The rights of rectification (GDPR Art. 16) and restriction (Art. 18), issue 5.

-- Type-specific parameters of a request, as JSON text: for rectification, the dataset and the
-- new values (personal data: the audit log names the columns only).
ALTER TABLE requests ADD COLUMN details TEXT;

-- Subjects whose processing is restricted (Art. 18). Keyed by subject id, unlike the rest of
-- the schema, because the pipelines that must honour a restriction know subjects by id; only
-- admins and producer tokens can read it. Lifting a restriction deletes its row.
CREATE TABLE restricted_subjects (
    subject_id       TEXT PRIMARY KEY,
    restricted_since TEXT NOT NULL,
    request_id       TEXT NOT NULL REFERENCES requests (id)
);
