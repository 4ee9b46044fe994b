//! Where a command writes ([`Output`]) and how it ended ([`Exit`], the process exit code).

use std::io::Write;

use crate::progress::ProgressMode;

/// How a command ended, and the process exit code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit code 0: done (for `locate`, also when the subject was not found).
    Success,
    /// Exit code 1: the command ran but some files failed (each is reported on stderr and left
    /// untouched; the others were processed), or an unexpected error stopped it.
    Failure,
    /// Exit code 2: bad usage or input, found before anything was changed: unreadable or empty
    /// subjects file, missing lake root, a Delta Lake / Iceberg table, invalid options.
    Usage,
    /// Exit code 3: `scan-residency` found rows stored outside their allowed regions, or
    /// `remediate-residency` left some (no allowed region in the dataset, or a file failed).
    Violations,
}

impl Exit {
    /// The process exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Violations => 3,
        }
    }
}

/// Where a command writes: its result (`out`, stdout), its diagnostics (`err`, stderr), and how it
/// shows progress.
pub struct Output<'a> {
    /// Results; the last line is the JSON summary where the command has one.
    pub out: &'a mut dyn Write,
    /// Progress, per-file failures, errors.
    pub err: &'a mut dyn Write,
    /// How long-running commands show progress on `err`.
    pub progress: ProgressMode,
}
