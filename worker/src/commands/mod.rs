//! One module per `lethe-worker` subcommand. Each exposes `run(args, output)`, which returns the
//! [`Exit`](crate::output::Exit) status or a [`CommandError`] saying which kind of failure it was.

mod catalog;
pub mod compact;
pub mod erase;
pub mod generate;
pub mod ingest;
pub mod locate;
pub mod residency;
pub mod run;

use lethe_core::lake::LakeError;

/// Why a command stopped before finishing.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad usage or input, detected before anything was changed (exit code 2).
    #[error("{}", chain(.0))]
    Usage(anyhow::Error),
    /// An unexpected failure while running (exit code 1).
    #[error("{}", chain(.0))]
    Failed(anyhow::Error),
}

/// `error: cause: cause…` on one line, skipping a cause whose text the line already holds (many
/// error types repeat their source in their own message).
fn chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

impl CommandError {
    /// Sorts a root-level lake error: a missing root, a table-format table or a table feature
    /// Lethe cannot honour is bad input (the operator pointed at the wrong thing; nothing was
    /// changed); anything else is a failure.
    pub fn from_lake(e: LakeError) -> Self {
        match e {
            LakeError::InvalidRoot { .. }
            | LakeError::TableFormat { .. }
            | LakeError::TableFeature { .. } => CommandError::Usage(e.into()),
            other => CommandError::Failed(other.into()),
        }
    }
}

/// The default number of files processed at once: one more than the number of CPU cores, so
/// a file waiting on its reads or its upload does not leave a core idle (on 2 cores, 3 files at
/// once erased the surgery benchmark's lake 4–8 % faster than 2; see `bench/surgery.md`).
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// A multi-threaded tokio runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Failed(anyhow::Error::new(e).context("starting the runtime")))
}
