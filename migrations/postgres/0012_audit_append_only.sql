-- The audit log is append-only (issue 13): nothing in Lethe updates, deletes or truncates an
-- audit entry, and this trigger makes the database refuse it too. A table owner or superuser
-- can still disable the trigger; the signed checkpoints written outside the database catch
-- that. In production the migrations run as an owner role and the service's role holds only
-- SELECT and INSERT on audit_log (see docs/audit.md).
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete
BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Nobody gets UPDATE, DELETE or TRUNCATE through PUBLIC; the role running the migrations
-- gives up its own (a superuser, whose privileges are never checked, is left alone so the
-- migration does not fail on a test cluster).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM %I', current_user);
    END IF;
END;
$$;
