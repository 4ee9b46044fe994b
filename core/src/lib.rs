//! # lethe-core
//!
//! The core library of Lethe, a GDPR compliance and data-governance service for Parquet data
//! lakes. Both binaries (`lethe-service` and `lethe-worker`) depend on this crate; neither depends
//! on the other.
//!
//! | module | idea it owns |
//! |---|---|
//! | [`domain`] | validated newtypes and the privacy-request model (GDPR Art. 12, 15, 17) |
//! | [`store`] | the database, [`store::Store`] (SQLite embedded, PostgreSQL in production), split by aggregate |
//! | [`keyring`] | per-subject data keys (DEKs) wrapped by a KEK, and the cell envelope: crypto-shredding (GDPR Art. 17) |
//! | [`lake`] | the lake engine: list, locate, rewrite (erase) and export Parquet files on `object_store` |
//! | [`audit`] | the hash-chained, pseudonymous audit log |
//! | [`requests`] | the privacy request lifecycle: filing, approval, rejection, cancellation, extension, completion, first-phase key destruction |
//! | [`datasets`] | datasets as the lifecycle and the API see them: listing a root within a deadline |
//! | [`exports`] | exports once written: sealing context, expiry sweep, deletion on erasure, re-wrapping after a KEK rotation |
//! | [`jobs`] | the job queue runner that executes approved privacy requests |
//! | [`ingest`] | writing new rows into a managed dataset: validation, residency routing, cell encryption, Parquet files sorted by subject |
//! | [`compaction`] | merging a partition's small files, applying pending erasures in the same pass |
//! | [`residency`] | data residency (GDPR Chapter V): policies per jurisdiction, the residency scan and its remediation |
//! | [`webhooks`] | signed notifications of request status changes: outbox, dispatcher, signatures |
//! | [`demo`] | a generator for the running-app demo lake |
//! | [`config`] | layered configuration: defaults, `lethe.toml`, `LETHE__…` environment |
#![forbid(unsafe_code)]

pub mod audit;
pub mod compaction;
pub mod config;
pub mod datasets;
pub mod demo;
pub mod domain;
pub mod exports;
pub mod ingest;
pub mod jobs;
pub mod keyring;
pub mod lake;
pub mod process_metrics;
pub mod requests;
pub mod residency;
pub mod store;
pub mod webhooks;
