//! The real `lethe-worker` binary: crash safety (SIGKILL mid-rewrite), ingest, residency and
//! metrics from the command line. One binary so that the dependency tree is linked once.

mod crash;
mod ingest_cli;
mod metrics_cli;
mod residency_cli;
