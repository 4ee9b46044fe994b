-- Claiming a job whose worker died scans running jobs by lease end.
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
CREATE INDEX jobs_kind_status ON jobs (kind, status);
