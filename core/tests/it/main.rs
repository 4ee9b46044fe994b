//! Integration tests of the core crate, in one binary so that a build links the dependency tree
//! once instead of once per file: the store contract on SQLite and PostgreSQL, the lake engine on
//! S3, ingest, residency, lease fencing, Delta Lake and Apache Iceberg tables, audit tampering and a panicking job.
//!
//! One area: `cargo test -p lethe-core --test it store_contract`.

mod audit_sink_s3;
mod audit_tamper;
mod delta;
mod fencing;
mod iceberg;
mod iceberg_rest;
mod ingest;
mod job_panic;
mod lake_s3;
mod lake_s3_copy;
mod lifecycle_events;
mod residency;
mod store_contract;
