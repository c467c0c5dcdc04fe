//! Prometheus metrics of an agent, served in the text format on
//! `GET /metrics` (plain HTTP) when `--metrics-listen` is given: running
//! actions, artifact bytes served to and fetched from peers (counted where the
//! chunks move, through the process-wide handles below), and the size of the
//! blob store (measured at scrape time).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::store::Store;

/// What `prometheus-client` writes (Prometheus negotiates and parses it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A slow client may take this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("encoding the metrics failed")]
    Encode(#[from] std::fmt::Error),
}

struct AgentMetrics {
    registry: Registry,
    running: Gauge,
    served: Counter,
    fetched: Counter,
    store_bytes: Gauge,
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

/// Binds the metrics listener (a failure stops the agent at start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, store: Store) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let store = store.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(respond(&req, &store).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if let Err(e) = conn {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(req: &Request<Incoming>, store: &Store) -> Response<String> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match render(store).await {
        Ok(body) => {
            let mut r = Response::new(body);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: rendering failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
    }
}

fn plain(status: StatusCode, body: &str) -> Response<String> {
    let mut r = Response::new(body.to_string());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
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
