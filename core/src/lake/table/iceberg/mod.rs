//! Apache Iceberg tables (Iceberg table spec, <https://iceberg.apache.org/spec/>, format
//! versions 1 and 2), through an Iceberg SQL or REST catalog.
//!
//! | module | idea it owns |
//! |---|---|
//! | [`catalog`] | [`SqlCatalog`]: the JDBC catalog's `iceberg_tables`, load and compare-and-swap; [`Catalog`] |
//! | [`rest`] | [`RestCatalog`]: the REST catalog's load and commit (requirements + updates) |
//! | [`table`] | [`IcebergTable`]: a table of a catalog, its metadata file and its files by URI |
//! | [`metadata`] | [`TableMetadata`]: the metadata JSON, and its next versions; [`LoadedTable`]: one version as read |
//! | `avro` | Avro container files (manifests, manifest lists) as generic values |
//! | `manifest` | manifest lists and manifests: typed fields, inheritance |
//! | `scan` | a snapshot's live files; pruning by partition values and bounds; delete files |
//! | `deletes` | the rows position and equality delete files delete from a data file |
//! | `bounds` | single-value serialization of bounds (Appendix D) |
//! | `stats` | a new data file's metrics from its footer |
//! | `commit` | the `overwrite` snapshot: manifests, manifest list, metadata |
//! | `features` | what Lethe refuses (format v3, branches, delete files not in Parquet…) |
//! | `purge` | expiring the snapshots that can read erased rows; deleting their files; crash leftovers |
//! | `names` | the names of the files Lethe writes |
//! | [`erase`] | [`IcebergErase`]: locate, rewrite beside, commit, retry, purge, verify |
//!
//! Lethe reads and writes the metadata itself: the `iceberg` crate (iceberg-rust 0.10) is on
//! arrow 58, a second arrow stack beside ours (see `docs/tables.md`).

mod avro;
mod bounds;
pub mod catalog;
mod commit;
mod deletes;
pub mod erase;
mod features;
mod manifest;
pub mod metadata;
mod names;
mod purge;
pub mod rest;
mod scan;
mod stats;
pub mod table;

pub use catalog::{Catalog, SqlCatalog};
pub(crate) use deletes::deleted_in;
pub use erase::{IcebergErase, IcebergEraseOutcome};
pub(crate) use features::check_features;
pub use metadata::LoadedTable;
pub use metadata::TableMetadata;
pub(crate) use purge::data_file;
pub use rest::{Change, RestCatalog};
pub(crate) use scan::current_files;
pub use table::IcebergTable;
