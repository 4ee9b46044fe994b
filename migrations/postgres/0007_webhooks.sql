-- Webhooks (notifications of request status changes): endpoints the company's app registers,
-- and the outbox of deliveries. A delivery row is written in the same transaction as the status
-- change it reports, so no change is lost and none is announced that did not commit.
-- `secret` is the shared HMAC-SHA256 key of the endpoint (shown once on creation): it must be
-- stored to sign, so the database holds it in the clear.
CREATE TABLE webhook_endpoints (
    id             TEXT PRIMARY KEY,
    url            TEXT NOT NULL,
    secret         TEXT NOT NULL,
    -- JSON array of event types, e.g. ["request.completed"], or ["*"] for all
    events         TEXT NOT NULL,
    description    TEXT,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    deactivated_at TEXT
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    request_id       TEXT REFERENCES requests (id),
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- HTTP attempts that ended (a dispatcher that died mid-attempt does not count)
    attempts         BIGINT NOT NULL DEFAULT 0,
    -- when a pending delivery is due; a claim moves it past the lease, so a dead dispatcher's
    -- claim expires by itself
    next_attempt_at  TEXT NOT NULL,
    lease_token      TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    last_attempt_at  TEXT,
    created_at       TEXT NOT NULL,
    delivered_at     TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
