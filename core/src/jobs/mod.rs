//! The job runner: claims jobs from the store's queue and executes them.
//!
//! A worker loops: claim (with a lease) → heartbeat while running → finish, fenced by the lease
//! token so a worker that lost its lease cannot commit. Each job runs in its own task, so a
//! panic fails the job, not the worker. Errors are sorted into retry (transient: storage
//! unreachable) and abort (permanent: missing column, corrupt file, bad root).

mod context;
mod erase;
mod erase_results;
mod erase_table;
mod execute;
mod holds;
mod lease;
mod maintenance;
mod rectify;
mod restrict;
pub mod results;
mod runner;

pub use crate::store::EraseFileTask;
pub use context::{ExecuteContext, Execution, JobError};
pub use erase_results::{BatchResults, erasure_result};
pub use execute::execute_job;
pub use lease::LeaseGuard;
pub use runner::{Worker, WorkerConfig};
