//! API tests: the real service on a random port, the real in-process worker, a real lake.

mod helpers;
mod lake_snapshot;

mod audit_proof;
mod auth;
mod datasets;
mod deadlines;
mod encrypted_story;
mod external_identity;
mod holds;
mod hygiene;
mod ingest;
mod keys;
mod least_privilege;
mod lifecycle;
mod metrics;
mod openapi;
mod refresh;
mod requests;
mod residency;
mod rights;
mod s3;
mod secrets;
mod sessions;
mod story;
mod tables;
mod throttle;
mod webhooks;
