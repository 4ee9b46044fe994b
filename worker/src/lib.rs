//! # lethe-worker
//!
//! The Lethe worker: runs privacy-request jobs from the database queue, and works offline on any
//! Hive-partitioned Parquet lake from the command line (no service, no database).
//!
//! | module | idea it owns |
//! |---|---|
//! | [`cli`] | the command line ([`cli::Cli`]) and its dispatch |
//! | [`args`] | each subcommand's arguments |
//! | [`output`] | where a command writes ([`output::Output`]) and its exit codes ([`output::Exit`]) |
//! | [`commands`] | one module per subcommand: `generate`, `locate`, `erase` |
//! | [`subject_list`] | reading a file of subject ids (one per line, `#` comments) |
//! | [`progress`] | erase progress on stderr: a bar on a terminal, periodic lines otherwise |
//! | [`rss`] | the process's peak resident memory, for the erase summary |
//!
//! `main.rs` only parses the arguments and calls [`cli::run`]; tests call [`cli::run_with`] to
//! capture what a command prints.
#![forbid(unsafe_code)]

pub mod args;
pub mod cli;
pub mod commands;
pub mod output;
pub mod progress;
pub mod rss;
pub mod subject_list;
