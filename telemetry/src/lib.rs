//! ferry-telemetry: the plumbing by which both daemons are watched, written
//! once. [`init_tracing`] sets up logs (an env filter with a per-daemon
//! default, to stderr); [`metrics`] serves `GET /metrics` over plain HTTP
//! with whatever text the daemon renders at scrape time. What the metrics
//! are stays with each daemon.

pub mod metrics;

/// Sends `tracing` events to stderr, filtered by `RUST_LOG`, else by
/// `default_filter` (e.g. `"info,h2=warn"`). Call once, at the start of `main`.
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
