//! Logging set-up: human-readable by default, JSON lines in production.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format` is `pretty` or `json`; `RUST_LOG` overrides
/// `filter`. Logs go to stderr. Calling it twice is harmless (the second call does nothing).
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
