//! Tables of table formats: datasets whose files are listed by the format's own log or
//! metadata, not by the folder. A rewrite is committed through the format's protocol (one
//! commit per table per batch), then the purge deletes the replaced files so that no
//! readable snapshot holds the erased rows.
//!
//! | module | idea it owns |
//! |---|---|
//! | [`delta`] | Delta Lake tables: snapshot through `delta_kernel`, erasure commit, purge |
//!
//! Apache Iceberg tables are to come beside it.

pub mod delta;
