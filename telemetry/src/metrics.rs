//! The `/metrics` endpoint: plain HTTP/1.1, `GET /metrics` only, answered
//! with the text a daemon renders at scrape time in the OpenMetrics format
//! (`prometheus-client`'s encoder). Anything else gets a short plain-text
//! 404 or 405; a client gets [`HEADER_TIMEOUT`] to send its request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;

/// What `prometheus-client` writes (Prometheus negotiates and parses it).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A slow client may take this long to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds the metrics listener (a failure stops the daemon at start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves `GET /metrics` on `listener` until the task is dropped; `render`
/// produces the body for each scrape, or the reason it could not.
pub async fn serve<R, F, E>(listener: TcpListener, render: R)
where
    R: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = Result<String, E>> + Send,
    E: std::fmt::Display,
{
    let render = Arc::new(render);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(respond(&req, &*render).await) }
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

async fn respond<R, F, E>(req: &Request<Incoming>, render: &R) -> Response<String>
where
    R: Fn() -> F,
    F: Future<Output = Result<String, E>>,
    E: std::fmt::Display,
{
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
    match render().await {
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn ask(addr: SocketAddr, method: &str, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[tokio::test]
    async fn only_get_metrics_is_answered_with_what_the_daemon_renders() {
        let listener = bind("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let scrapes = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = scrapes.clone();
        tokio::spawn(serve(listener, move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(format!("up {n}\n# EOF\n"))
                } else {
                    Err("the state is gone")
                }
            }
        }));
        let ok = ask(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.contains(OPENMETRICS) && ok.ends_with("up 0\n# EOF\n"),
            "{ok}"
        );
        let failed = ask(addr, "GET", "/metrics").await;
        assert!(failed.starts_with("HTTP/1.1 500"), "{failed}");
        let missing = ask(addr, "GET", "/nope").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let posted = ask(addr, "POST", "/metrics").await;
        assert!(
            posted.starts_with("HTTP/1.1 405") && posted.contains("allow: GET"),
            "{posted}"
        );
        assert_eq!(scrapes.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Taken addresses are a clear error.
        let err = bind(addr).await.expect_err("bound twice");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
