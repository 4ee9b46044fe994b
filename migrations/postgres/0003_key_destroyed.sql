-- Two-phase erasure: when the subject's data key was destroyed (crypto-shredding), before the
-- physical rewrite of the lake completes the request.
ALTER TABLE requests ADD COLUMN key_destroyed_at TEXT;
