-- Crypto-shredding: one wrapped data key (DEK) per subject, and tombstones of destroyed keys.
-- Both are keyed by subject_ref, a keyed hash of the subject id: no personal data here.
CREATE TABLE subject_keys (
    subject_ref TEXT PRIMARY KEY,
    kek_id      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE tombstones (
    subject_ref TEXT PRIMARY KEY,
    shredded_at TEXT NOT NULL
);
