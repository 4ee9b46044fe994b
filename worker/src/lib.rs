//! # lethe-worker
//!
//! The Lethe worker: runs privacy-request jobs from the database queue, and works offline on any
//! Hive-partitioned Parquet lake from the command line (no service, no database).
//!
//! | module | idea it owns |
//! |---|---|
//! | [`cli`] | the command line: arguments ([`cli::Cli`]), dispatch and exit codes ([`cli::Exit`]) |
//! | [`commands`] | one module per subcommand: `generate`, `locate`, `erase` |
//! | [`subject_list`] | reading a file of subject ids (one per line, `#` comments) |
//! | [`progress`] | erase progress on stderr: a bar on a terminal, periodic lines otherwise |
//! | [`rss`] | the process's peak resident memory, for the erase summary |
//!
//! `main.rs` only parses the arguments and calls [`cli::run`]; tests call [`cli::run_with`] to
//! capture what a command prints.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod progress;
pub mod rss;
pub mod subject_list;
