-- The audit log is append-only (issue 13): nothing in Lethe updates or deletes an audit
-- entry, and these triggers make the database refuse it too, so a mistaken statement or a
-- careless tool cannot rewrite history. Whoever holds the database file can still drop the
-- triggers; the signed checkpoints written outside the database catch that.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
