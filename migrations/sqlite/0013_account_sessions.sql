-- Sessions that can be ended (issue 11): every access token carries its account's token epoch;
-- signing out everywhere, changing the password and disabling the account raise the epoch, so
-- every token issued before is refused at once. A disabled account cannot sign in.
ALTER TABLE users ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at TEXT;
