//! The process-wide metrics that core code records through the `metrics` facade, whatever
//! process it runs in: the service renders them at its `/metrics`, a standalone
//! `lethe-worker run --metrics-addr` at its own.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `lethe_rows_removed_total` | counter | — |
//! | `lethe_bytes_rewritten_total` | counter | — |
//! | `lethe_jobs_ended_total` | counter | `kind` (e.g. `erase_file`), `outcome` (`succeeded`, `retry`, `deferred`, `failed`) |
//! | `lethe_webhook_attempts_total` | counter | `outcome` (`delivered`, `retry`, `failed`) |

/// Rows removed from lake files by erasures.
pub const ROWS_REMOVED: &str = "lethe_rows_removed_total";
/// Bytes of rewritten lake files written by erasures.
pub const BYTES_REWRITTEN: &str = "lethe_bytes_rewritten_total";
/// Job runs that ended, by job kind and outcome.
pub const JOBS_ENDED: &str = "lethe_jobs_ended_total";
/// Webhook delivery attempts, by outcome.
pub const WEBHOOK_ATTEMPTS: &str = "lethe_webhook_attempts_total";

/// Describes the series to the installed recorder and registers the unlabelled counters at
/// zero, so they exist before the first erasure. Call once, after installing the recorder.
pub fn describe() {
    metrics::describe_counter!(
        ROWS_REMOVED,
        "Rows removed from lake files by erasures (this process)"
    );
    metrics::describe_counter!(
        BYTES_REWRITTEN,
        metrics::Unit::Bytes,
        "Bytes of rewritten lake files written by erasures (this process)"
    );
    metrics::describe_counter!(
        JOBS_ENDED,
        "Job runs that ended in this process, by kind and outcome"
    );
    metrics::describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts made by this process, by outcome"
    );
    metrics::counter!(ROWS_REMOVED).increment(0);
    metrics::counter!(BYTES_REWRITTEN).increment(0);
}
