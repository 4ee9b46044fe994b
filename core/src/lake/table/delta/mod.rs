//! Delta Lake tables (Delta protocol, `PROTOCOL.md` of delta-io/delta).
//!
//! | module | idea it owns |
//! |---|---|
//! | [`snapshot`] | [`DeltaTable`], [`DeltaSnapshot`], [`AddFile`]: the log replayed by `delta_kernel` |
//! | [`features`] | the table features Lethe honours, and the refusal of the others |
//! | `stats` | the `stats` of an `add` action, from a file's footer |
//! | `log` | one commit of `remove` + `add` actions, put-if-absent; the JSON commits read back |
//! | `names` | the names of Lethe's data files (`…-lethe-<uuid>.parquet`) |
//! | [`purge`] | deleting the replaced files after the commit; what crashed runs left |
//! | [`erase`] | [`DeltaErase`]: locate, rewrite beside, commit, retry, purge, verify |
//!
//! `delta_kernel` (with its default engine) reads the log: JSON commits, Parquet and v2
//! checkpoints, `_last_checkpoint`, and skips files by their statistics. Lethe writes the
//! commit itself (see `docs/tables.md` for why).

pub mod erase;
pub mod features;
mod log;
mod names;
pub mod purge;
pub mod snapshot;
mod stats;

pub use erase::{DeltaErase, DeltaEraseOutcome};
pub use features::check_features;
pub(crate) use log::decode;
pub use log::engine_info;
pub use names::LETHE_FILE_MARKER;
pub(crate) use names::{is_lethe_file, new_file_path};
pub use purge::Purged;
pub use snapshot::{AddFile, DeltaSnapshot, DeltaTable};
