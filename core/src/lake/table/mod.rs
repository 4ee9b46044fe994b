//! Tables of table formats: datasets whose files are listed by the format's own log or
//! metadata, not by the folder. A rewrite is committed through the format's protocol (one
//! commit per table per batch), then the purge deletes the replaced files so that no
//! readable snapshot holds the erased rows.
//!
//! | module | idea it owns |
//! |---|---|
//! | [`delta`] | Delta Lake tables: snapshot through `delta_kernel`, erasure commit, purge |
//! | [`iceberg`] | Apache Iceberg tables of a SQL or REST catalog: manifests, overwrite commit, expiry and purge |
//! | `open` | [`Table`]: either format as one handle (describe, live files, erase) |

pub mod delta;
pub mod iceberg;
mod open;

pub use open::{LiveFiles, Table, TableEraseOutcome, TableInfo};
