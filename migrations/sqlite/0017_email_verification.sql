-- E-mail ownership (issue 11): a self-registered account proves it controls its e-mail with a
-- one-time code before an admin may link it to a data subject. Only a hash of the code is
-- kept, with its expiry and the wrong guesses made so far (one live code per account).
ALTER TABLE users ADD COLUMN email_verified_at TEXT;
CREATE TABLE email_codes (
    user_id    TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
-- Admin and auditor accounts are created from the command line by an operator.
UPDATE users SET email_verified_at = created_at WHERE role IN ('admin', 'auditor');
