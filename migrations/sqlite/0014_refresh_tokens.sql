-- Refresh tokens (issue 11): a sign-in starts a token family; each refresh spends its token
-- (used_at) and issues the next one of the same family. A spent token presented again is a
-- reuse (a stolen copy): the whole family is revoked. Only the hex SHA-256 of a token is kept.
-- `epoch` is the account's token epoch at sign-in: signing out everywhere, a password change
-- or disabling the account raise it and the family no longer refreshes.
CREATE TABLE refresh_tokens (
    id                TEXT PRIMARY KEY,
    family_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    token_hash        TEXT NOT NULL UNIQUE,
    epoch             BIGINT NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    family_expires_at TEXT NOT NULL,
    used_at           TEXT,
    revoked_at        TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
