//! `lethe-worker`: parses the command line and hands it to [`lethe_worker::cli::run`].
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = lethe_worker::cli::Cli::parse();
    match cli.command {
        lethe_worker::cli::Command::Run(_) => lethe_worker::cli::init_tracing_from_settings(),
        _ => lethe_worker::cli::init_tracing(),
    }
    ExitCode::from(lethe_worker::cli::run(cli).code())
}
