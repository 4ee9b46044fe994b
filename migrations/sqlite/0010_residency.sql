-- Data residency (issue 5, item 9; GDPR Chapter V): jurisdictions of data subjects, the
-- policies that map a jurisdiction to the regions where its subjects' rows may be stored, and
-- the findings of the last residency scan of each dataset. Subjects appear only as the
-- keyring's subject reference (a keyed hash), never by id.

-- Regions (a JSON array of names, in order of preference) where rows of subjects of a
-- jurisdiction may be stored. A jurisdiction without a policy is not restricted.
CREATE TABLE residency_policies (
    jurisdiction TEXT PRIMARY KEY,
    regions      TEXT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- The jurisdiction of a subject: set by an admin (source 'admin') or recorded at ingest from a
-- dataset's jurisdiction column (source 'ingest:<dataset>') for a subject who had none.
CREATE TABLE subject_jurisdictions (
    subject_ref  TEXT PRIMARY KEY,
    jurisdiction TEXT NOT NULL,
    source       TEXT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX subject_jurisdictions_jurisdiction ON subject_jurisdictions (jurisdiction);

-- The last residency scan of each dataset (a scan replaces the previous one's row and
-- findings in one transaction).
CREATE TABLE residency_scans (
    dataset_id      TEXT PRIMARY KEY REFERENCES datasets (id),
    dataset         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('clean', 'violations', 'not_scannable')),
    scanned_at      TEXT NOT NULL,
    files_scanned   BIGINT NOT NULL,
    rows_scanned    BIGINT NOT NULL,
    violating_files BIGINT NOT NULL,
    violating_rows  BIGINT NOT NULL,
    note            TEXT
);

-- Files holding rows stored outside their subjects' allowed regions, as of the last scan.
CREATE TABLE residency_violations (
    id              TEXT PRIMARY KEY,
    dataset_id      TEXT NOT NULL REFERENCES datasets (id),
    dataset         TEXT NOT NULL,
    region          TEXT NOT NULL,
    root_url        TEXT NOT NULL,
    partition_path  TEXT NOT NULL,
    file            TEXT NOT NULL,
    row_count       BIGINT NOT NULL,
    subject_count   BIGINT NOT NULL,
    jurisdictions   TEXT NOT NULL,
    allowed_regions TEXT NOT NULL,
    scanned_at      TEXT NOT NULL
);
CREATE INDEX residency_violations_dataset ON residency_violations (dataset_id, file);
