-- Leases on a dataset's files, so that rewrites of the same files do not race (issue 4/5
-- follow-up): compaction and residency remediation hold a dataset exclusively; erasure tasks
-- and rectifications share it. A holder renews its lease while it works; a lease whose
-- holder died expires and is taken over.
CREATE TABLE dataset_leases (
    dataset_id  TEXT NOT NULL REFERENCES datasets (id),
    holder      TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('shared', 'exclusive')),
    purpose     TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (dataset_id, holder)
);
