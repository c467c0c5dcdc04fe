//! The HTTPS listener: accepts through the guarded listener and TLS of
//! `ferry_certs::listen` (connection caps, idle deadline, handshake
//! deadline), serves each connection with hyper-util (HTTP/1.1 or HTTP/2, by
//! ALPN) with a deadline on request headers, and puts a deadline on every
//! whole request. Also the pieces routers share: per-source rate limiting,
//! bounded body reads and small JSON answers.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_certs::listen::{Limits, incoming, tls_incoming};
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::ops::OpError;
use crate::raft::ProposeError;
use ferry_state::Rejection;
use tonic::transport::server::Connected;
use tower::ServiceExt;

/// What one HTTP client may ask of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body read (webhook payloads are far smaller; GitHub
    /// caps its own at 25 MB but pushes of a few commits are a few KiB).
    pub body_bytes: usize,
    /// Requests per minute from one source address (bursts of as many).
    /// Git hosts deliver every repository's webhooks from a few addresses,
    /// so this bounds a host's deliveries as a whole, not one repository's.
    pub per_minute: NonZeroU32,
    /// How long a client may take to send its request headers (HTTP/1.1).
    pub header_timeout: Duration,
    /// How long a whole request may take, body and answer included.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_bytes: 1024 * 1024,
            per_minute: NonZeroU32::new(300).unwrap_or(NonZeroU32::MIN),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How long an HTTP/2 connection may go without answering a ping.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 64;

/// Serves `app` over TLS (`tls`, e.g. from
/// `ferry_certs::tls::https_server_config`) on `listener` until the task is
/// dropped. Connections are bounded by `limits`, requests by `http`'s
/// header and whole-request deadlines. Handlers find the client's address
/// as a [`ClientAddr`] extension.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    http: HttpLimits,
    app: Router,
) {
    serve_until(listener, tls, limits, http, app, std::future::pending()).await;
}

/// [`serve`] until `stop` resolves; then the listener is closed, every open
/// connection finishes the requests it has begun and closes (HTTP/1.1 after
/// its current request, HTTP/2 with a GOAWAY), and this returns once all
/// have closed (each request is bounded by `http.request_timeout`).
pub async fn serve_until(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    http: HttpLimits,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        http.request_timeout,
        request_deadline,
    ));
    let (h1, h2) = builders(&http);
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    // Told to every connection (and the accept loop) when the stop comes;
    // each holds a receiver until it closed.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let mut accept_ends = stopped.clone();
    let accepted = incoming(listener, limits).take_until(async move {
        let _ = accept_ends.wait_for(|s| *s).await;
    });
    let mut conns = Box::pin(tls_incoming(accepted, tls));
    let mut stop = std::pin::pin!(stop);
    loop {
        let conn = tokio::select! {
            () = &mut stop => break,
            conn = conns.next() => conn,
        };
        let Some(conn) = conn else { break };
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "https: accepting a connection failed");
                continue;
            }
        };
        let (tcp, session) = stream.get_ref();
        let Some(peer) = tcp.connect_info().remote_addr() else {
            continue;
        };
        // ALPN says which protocol the client speaks; without it, HTTP/1.1.
        let builder = if session.alpn_protocol() == Some(b"h2") {
            h2.clone()
        } else {
            h1.clone()
        };
        let app = app.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    let app = app.clone();
                    async move {
                        let req = req.map(Body::new);
                        Ok::<_, Infallible>(app.oneshot(req).await.into_response())
                    }
                });
            let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), svc));
            let mut asked = false;
            let ended = loop {
                tokio::select! {
                    ended = conn.as_mut() => break ended,
                    r = stopped.wait_for(|s| *s), if !asked => {
                        asked = true;
                        if r.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "https connection ended with an error");
            }
        });
    }
    // No new connections (the listener closes), and the open ones finish.
    let _ = stopping.send(true);
    drop(conns);
    drop(stopped);
    stopping.closed().await;
}

/// Connection builders for HTTP/1.1 and HTTP/2 (each told its protocol, so
/// no bytes are spent guessing it).
fn builders(http: &HttpLimits) -> (auto::Builder<TokioExecutor>, auto::Builder<TokioExecutor>) {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_timeout)
        .max_buf_size(64 * 1024);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(64 * 1024);
    (b.clone().http1_only(), b.http2_only())
}

/// Answers 408 when a request (its body included) takes longer than the limit.
async fn request_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let peer = peer_of(&req);
    // A login link's secret is in its path: never logged.
    let path = match req.uri().path() {
        p if p.starts_with("/login/") => "/login/…".to_string(),
        p => p.to_string(),
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::info!(peer = %shown(peer), %path, ?limit, "https: request timed out");
            Answer::error(format!(
                "the request did not complete within {}s",
                limit.as_secs()
            ))
            .with_status(StatusCode::REQUEST_TIMEOUT)
        }
    }
}

/// Per-source-address rate limiting for a router:
/// `router.layer(axum::middleware::from_fn_with_state(limit, RateLimit::admit))`.
#[derive(Clone)]
pub struct RateLimit(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl RateLimit {
    /// At most `per_minute` requests a minute from one address, in bursts
    /// of as many.
    pub fn new(per_minute: NonZeroU32) -> RateLimit {
        RateLimit(Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))))
    }

    /// Middleware: 429 with `Retry-After` beyond the limit. Requests that
    /// came without a [`ClientAddr`] (not through [`serve`]) share one bucket.
    pub async fn admit(State(limit): State<RateLimit>, req: Request, next: Next) -> Response {
        // Keeps the limiter's memory bounded by recently active sources.
        if limit.0.len() > 10_000 {
            limit.0.retain_recent();
        }
        let peer = peer_of(&req);
        let key = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        match limit.0.check_key(&key) {
            Ok(()) => next.run(req).await,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                // Debug, not info: a flood would otherwise flood the log too.
                tracing::debug!(peer = %shown(peer), path = req.uri().path(), "https: rate limited");
                Answer::error(format!("too many requests from {key}; retry in {secs}s"))
                    .with_status(StatusCode::TOO_MANY_REQUESTS)
                    .retry_after(secs.max(1))
            }
        }
    }
}

/// The client's address, which [`serve`] puts in every request's
/// extensions (handlers can take it as `Extension<ClientAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The client's address, as [`serve`] records it.
pub fn peer_of<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    req.extensions().get::<ClientAddr>().map(|c| c.0)
}

/// An address for logs (`-` when unknown).
pub(crate) fn shown(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "-".to_string(), |p| p.ip().to_string())
}

/// Why a request body could not be read.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Refuses a request whose declared `Content-Length` is over `limit`
/// (before anything is looked up or read for it).
pub fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(BodyError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads at most `limit` bytes of `body`: a declared `Content-Length` over
/// the limit is refused before a byte is read, and a body without one is
/// cut off as soon as it passes the limit.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    check_declared_length(headers, limit)?;
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// The small JSON every endpoint answers with.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Answer {
    /// A refusal saying why.
    pub fn error(message: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            message: Some(message.into()),
            ..Answer::default()
        }
    }

    /// The answer as a response with `status`.
    pub fn with_status(&self, status: StatusCode) -> Response {
        let body = serde_json::to_vec(self).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        let mut r = (status, body).into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }
}

/// Adds `Retry-After: secs` to a response.
pub(crate) trait RetryAfter {
    fn retry_after(self, secs: u64) -> Response;
}

impl RetryAfter for Response {
    fn retry_after(mut self, secs: u64) -> Response {
        self.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
        self
    }
}

/// The HTTP status of an operation's error, for every HTTPS route (webhooks
/// and the console), like `service::status` does for gRPC. Internal errors are logged, not shown.
pub fn status_of(e: OpError) -> (StatusCode, String) {
    match e {
        OpError::Invalid(m) | OpError::Lint { summary: m, .. } => (StatusCode::BAD_REQUEST, m),
        OpError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        OpError::AlreadyExists(m) => (StatusCode::CONFLICT, m),
        OpError::FailedPrecondition(m) => (StatusCode::PRECONDITION_FAILED, m),
        OpError::PermissionDenied(_, m) => (StatusCode::FORBIDDEN, m),
        OpError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        OpError::DeadlineExceeded(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        OpError::Rejected(r) => match r {
            Rejection::NotFound(_) => (StatusCode::NOT_FOUND, r.to_string()),
            Rejection::AlreadyExists(_) => (StatusCode::CONFLICT, r.to_string()),
            Rejection::FailedPrecondition(_) | Rejection::Conflict(..) => {
                (StatusCode::PRECONDITION_FAILED, r.to_string())
            }
            Rejection::BadToken | Rejection::PermissionDenied(..) => {
                (StatusCode::FORBIDDEN, r.to_string())
            }
        },
        OpError::Raft(ProposeError::Rejected(r)) => status_of(OpError::Rejected(r)),
        OpError::Raft(
            e @ (ProposeError::NotLeader { .. }
            | ProposeError::Dropped
            | ProposeError::Stopped
            | ProposeError::Forward(_)),
        ) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the cluster cannot take the request right now ({e}); retry shortly"),
        ),
        e @ (OpError::Internal(_) | OpError::Raft(ProposeError::Encode(_))) => {
            tracing::error!(error = %e, "https: internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the coordinator's log".to_string(),
            )
        }
    }
}
