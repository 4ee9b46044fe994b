-- The request lifecycle (issue 5): cooling-off of erasures, export expiry, legal holds.

-- End of an approved erasure's cooling-off period: until then the subject can cancel it, no
-- plan absorbs it and its data key is not destroyed.
ALTER TABLE requests ADD COLUMN cooling_off_until TEXT;
-- When an access export stops being downloadable, and when the sweep deleted it.
ALTER TABLE requests ADD COLUMN export_expires_at TEXT;
ALTER TABLE requests ADD COLUMN export_deleted_at TEXT;
CREATE INDEX requests_export_expiry ON requests (export_expires_at);

-- Legal holds (GDPR Art. 17(3)): data of a dataset or of a subject that erasure must keep.
-- A subject is named by the audit pseudonym (as on requests), never by id.
CREATE TABLE legal_holds (
    id                TEXT PRIMARY KEY,
    dataset_id        TEXT REFERENCES datasets (id),
    subject_pseudonym TEXT,
    legal_basis       TEXT NOT NULL,
    reason            TEXT NOT NULL,
    ends_at           TEXT,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    released_by       TEXT,
    released_at       TEXT,
    CHECK ((dataset_id IS NULL) <> (subject_pseudonym IS NULL))
);
CREATE INDEX legal_holds_subject ON legal_holds (subject_pseudonym);
