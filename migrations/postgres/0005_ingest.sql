-- Ingest (issue 4): the schema of datasets Lethe writes, and the locator index of which files
-- hold which subjects. Subjects appear only as keyed hashes (the keyring's subject reference).

-- JSON of the dataset's declared schema (subject columns, PII handling, partitioning);
-- NULL for datasets written by others.
ALTER TABLE datasets ADD COLUMN schema_json TEXT;

-- Files of a dataset the locator index knows, with the size they had when indexed: a file whose
-- size differs (rewritten by someone else) is searched as if unknown.
CREATE TABLE lake_files (
    dataset_id TEXT NOT NULL REFERENCES datasets (id),
    path       TEXT NOT NULL,
    row_count  BIGINT NOT NULL,
    byte_size  BIGINT NOT NULL,
    indexed_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, path)
);

-- The locator index: subject reference -> files holding their rows, with the row count.
CREATE TABLE locator (
    dataset_id  TEXT NOT NULL,
    subject_ref TEXT NOT NULL,
    path        TEXT NOT NULL,
    row_count   BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, subject_ref, path)
);
CREATE INDEX locator_file ON locator (dataset_id, path);

-- API tokens for pipelines (the producer role): only the SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('producer')),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
