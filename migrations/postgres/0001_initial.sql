-- Lethe schema, PostgreSQL flavour. Timestamps are fixed-width RFC 3339 text (UTC, microseconds),
-- so text order is time order; JSON values are text. Keep in step with migrations/sqlite.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('subject', 'admin', 'auditor')),
    subject_id    TEXT,
    created_at    TEXT NOT NULL
);

CREATE TABLE datasets (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    root_url          TEXT NOT NULL,
    subject_column    TEXT NOT NULL,
    partition_columns TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    created_at        TEXT NOT NULL
);

CREATE TABLE requests (
    id                TEXT PRIMARY KEY,
    request_type      TEXT NOT NULL,
    subject_id        TEXT NOT NULL,
    subject_pseudonym TEXT NOT NULL,
    status            TEXT NOT NULL,
    filed_by          TEXT NOT NULL,
    verification_note TEXT,
    idempotency_key   TEXT,
    received_at       TEXT NOT NULL,
    due_at            TEXT NOT NULL,
    decided_by        TEXT,
    decided_at        TEXT,
    decision_reason   TEXT,
    completed_at      TEXT,
    result            TEXT,
    error             TEXT,
    export_path       TEXT,
    updated_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX requests_idempotency ON requests (filed_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_subject ON requests (subject_id);
CREATE INDEX requests_received ON requests (received_at);

CREATE TABLE request_events (
    id         BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests (id),
    status     TEXT NOT NULL,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    note       TEXT
);
CREATE INDEX request_events_request ON request_events (request_id, id);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    request_id       TEXT REFERENCES requests (id),
    -- the job that planned this one (an erasure plan fans out one task per affected file)
    parent_id        TEXT REFERENCES jobs (id),
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    result           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_at           TEXT NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX jobs_claim ON jobs (status, run_at);
CREATE INDEX jobs_parent ON jobs (parent_id);

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    request_id TEXT,
    subject    TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_request ON audit_log (request_id);

-- The last appended (seq, hash): appends update it in the same transaction, which serialises
-- them and lets `audit verify` notice a deleted tail.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
