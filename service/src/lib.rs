//! # lethe-service
//!
//! The HTTP API of Lethe: accounts (argon2id, JWT), datasets, privacy requests, the audit log,
//! and the OpenAPI document. `main.rs` only parses the command line; everything else is here so
//! tests can build the real server on a random port ([`startup::Application`]).
#![forbid(unsafe_code)]

pub mod auth;
pub mod checkpoints;
pub mod cli;
pub mod demo;
pub mod error;
pub mod guards;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod optional_json;
pub mod routes;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod telemetry;
