//! The real `lethe-worker` binary: crash safety (SIGKILL mid-rewrite), ingest, residency,
//! metrics, Delta Lake and Apache Iceberg tables from the command line. One binary so that the dependency tree is linked once.

mod crash;
mod delta_cli;
mod iceberg_cli;
mod ingest_cli;
mod metrics_cli;
mod residency_cli;
