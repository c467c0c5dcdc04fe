//! Prometheus metrics of an agent, served in the text format on
//! `GET /metrics` (plain HTTP) when `--metrics-listen` is given: running
//! actions, artifact bytes served to and fetched from peers (counted where the
//! chunks move, through the process-wide handles below), build cache hits,
//! misses and bytes restored and saved, and the size of the blob store
//! (measured at scrape time).

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use thiserror::Error;

use ferry_engine::store::Store;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("encoding the metrics failed")]
    Encode(#[from] std::fmt::Error),
}

struct AgentMetrics {
    registry: Registry,
    running: Gauge,
    served: Counter,
    fetched: Counter,
    store_bytes: Gauge,
    cache_hits: Counter,
    cache_partial_hits: Counter,
    cache_misses: Counter,
    cache_restored: Counter,
    cache_saved: Counter,
}

/// One set per process: the peer server, the fetch client and the session
/// all count into it without being handed a reference.
static METRICS: LazyLock<AgentMetrics> = LazyLock::new(|| {
    let mut m = AgentMetrics {
        registry: Registry::default(),
        running: Gauge::default(),
        served: Counter::default(),
        fetched: Counter::default(),
        store_bytes: Gauge::default(),
        cache_hits: Counter::default(),
        cache_partial_hits: Counter::default(),
        cache_misses: Counter::default(),
        cache_restored: Counter::default(),
        cache_saved: Counter::default(),
    };
    let r = &mut m.registry;
    r.register(
        "ferry_agent_running_actions",
        "Attempts this agent is running now",
        m.running.clone(),
    );
    // Counters get their `_total` suffix from the encoder.
    r.register(
        "ferry_agent_artifact_bytes_served",
        "Artifact and log bytes sent to peers (agents and coordinators)",
        m.served.clone(),
    );
    r.register(
        "ferry_agent_artifact_bytes_fetched",
        "Artifact bytes received from peer agents",
        m.fetched.clone(),
    );
    r.register(
        "ferry_agent_cache_hits",
        "Build caches restored from an entry with the exact key",
        m.cache_hits.clone(),
    );
    r.register(
        "ferry_agent_cache_partial_hits",
        "Build caches restored from an entry found by a restore key",
        m.cache_partial_hits.clone(),
    );
    r.register(
        "ferry_agent_cache_misses",
        "Build caches with no entry to restore (or one that could not be fetched)",
        m.cache_misses.clone(),
    );
    r.register(
        "ferry_agent_cache_bytes_restored",
        "Bytes of build cache entries restored into actions",
        m.cache_restored.clone(),
    );
    r.register(
        "ferry_agent_cache_bytes_saved",
        "Bytes of build cache entries saved after successful actions",
        m.cache_saved.clone(),
    );
    r.register(
        "ferry_agent_store_bytes",
        "Total size of the blobs in this agent's artifact store",
        m.store_bytes.clone(),
    );
    m
});

/// An attempt started running here.
pub fn action_started() {
    METRICS.running.inc();
}

/// An attempt stopped running here (finished, failed or cancelled).
pub fn action_ended() {
    METRICS.running.dec();
}

/// How a build cache of an attempt was restored.
pub enum CacheLookup {
    Hit(u64),
    Partial(u64),
    Miss,
}

/// A build cache was looked up for an attempt.
pub fn cache_looked_up(lookup: CacheLookup) {
    match lookup {
        CacheLookup::Hit(bytes) => {
            METRICS.cache_hits.inc();
            METRICS.cache_restored.inc_by(bytes);
        }
        CacheLookup::Partial(bytes) => {
            METRICS.cache_partial_hits.inc();
            METRICS.cache_restored.inc_by(bytes);
        }
        CacheLookup::Miss => {
            METRICS.cache_misses.inc();
        }
    }
}

/// A build cache entry of `bytes` was saved.
pub fn cache_saved(bytes: u64) {
    METRICS.cache_saved.inc_by(bytes);
}

/// `n` bytes of a blob were sent to a peer.
pub fn bytes_served(n: usize) {
    METRICS.served.inc_by(n as u64);
}

/// `n` bytes of a blob were received from a peer.
pub fn bytes_fetched(n: usize) {
    METRICS.fetched.inc_by(n as u64);
}

/// Measures the store and encodes every metric.
pub async fn render(store: &Store) -> Result<String, MetricsError> {
    let store = store.clone();
    let used = tokio::task::spawn_blocking(move || store.used_bytes())
        .await
        .unwrap_or(0);
    let m = &*METRICS;
    m.store_bytes.set(i64::try_from(used).unwrap_or(i64::MAX));
    let mut out = String::new();
    encode(&mut out, &m.registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_every_metric_with_the_store_size() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path().join("artifacts")).unwrap_or_else(|e| panic!("{e}"));
        let mut w = store.writer().unwrap_or_else(|e| panic!("{e}"));
        std::io::Write::write_all(&mut w, b"hello").unwrap_or_else(|e| panic!("{e}"));
        w.commit(None).unwrap_or_else(|e| panic!("{e}"));
        bytes_served(3);
        let text = render(&store).await.unwrap_or_else(|e| panic!("{e}"));
        for line in [
            "# TYPE ferry_agent_running_actions gauge",
            "ferry_agent_store_bytes 5",
            "ferry_agent_artifact_bytes_fetched_total ",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(
            text.lines().any(|l| l
                .strip_prefix("ferry_agent_artifact_bytes_served_total ")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= 3)),
            "{text}"
        );
    }
}
