//! How long the lake waits on a remote store, and how often it tries again: the same for
//! object_store's clients ([`super::store`]) and the signed S3 requests it lacks
//! ([`super::s3`]).

use std::time::Duration;

/// Connect timeout of every remote store: 5 seconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one HTTP request (a GET of a range, a PUT of one upload part…): 60 seconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Retries of a failed idempotent request (5xx, timeouts, connection resets): 5.
pub const MAX_RETRIES: usize = 5;
