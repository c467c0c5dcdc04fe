//! Outgoing HTTP(S) for notifications: one JSON `POST` at a time, bounded
//! in every way the receiver could stretch it — no redirects followed, the
//! whole exchange under one deadline, at most [`MAX_ANSWER_BYTES`] of the
//! answer read (and thrown away). The caller decides what a status means.
//!
//! Where it may connect is an [`egress::Policy`]: [`GuardedConnector`]
//! resolves the host itself, drops every address the policy refuses, and
//! connects only to those that passed — the addresses checked are the ones
//! connected to, so a name that resolves differently between a check and
//! the connection (DNS rebinding) gains nothing, and IP literals in any
//! spelling go through the same check. Failing to connect and being refused
//! by the policy read the same ([`SendError`]'s text): what viewers see of
//! a delivery is no port scanner. The reason is kept for the coordinator's
//! own log ([`SendError::detail`]).
//!
//! [`signature`] signs a body the way GitHub signs its webhooks, so the
//! receivers of Ferry's notifications can reuse their GitHub code.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::hmac;
use thiserror::Error;
use tokio::net::TcpStream;

use super::egress::Policy;

/// The most of an answer's body read before the connection is dropped.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long pooled connections stay open unused.
const POOL_IDLE: Duration = Duration::from_secs(30);

const AGENT: &str = concat!("ferry-coordinator/", env!("CARGO_PKG_VERSION"));

/// Why a notification could not be sent (a non-2xx answer is no error).
#[derive(Debug, Error)]
pub enum SendError {
    /// The operating system's trust store gave no usable certificate.
    #[error("no trusted root certificate could be loaded from the system store: {0}")]
    NoRoots(String),
    /// The TLS settings could not be built.
    #[error("TLS client configuration: {0}")]
    Tls(String),
    /// The URL is not an absolute `http://` or `https://` URL with a host.
    #[error("{0}")]
    Url(String),
    /// A header name or value is not valid in HTTP.
    #[error("header {name:?}: {reason}")]
    Header { name: String, reason: String },
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Every address of the host is in a network requests may not reach
    /// (reads as [`SendError::Request`] does: no port scanner).
    #[error("the receiver could not be reached")]
    Refused { detail: String },
    /// Resolving, connecting, TLS or the exchange failed.
    #[error("the receiver could not be reached")]
    Request { detail: String },
}

/// What a delivery that got no answer says, whatever the reason.
pub const UNREACHABLE: &str = "the receiver could not be reached";

impl SendError {
    /// The reason, for the coordinator's own log: the policy's refusal and
    /// the addresses refused, or the exchange's error and its causes.
    /// Never shown to viewers; it may name the receiver's host.
    pub fn detail(&self) -> String {
        match self {
            SendError::Refused { detail } | SendError::Request { detail } => detail.clone(),
            other => other.to_string(),
        }
    }
}

/// Sends notifications; cheap to clone (connections are pooled).
#[derive(Clone, Debug)]
pub struct Sender {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl Sender {
    /// A sender that trusts the operating system's root certificates and
    /// connects where `policy` allows. Certificates the store holds but
    /// rustls cannot use are skipped (and logged); it fails only when none
    /// is usable.
    pub fn native(policy: Policy) -> Result<Sender, SendError> {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "loading the system's root certificates");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "unusable system root certificates skipped");
        }
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "the store is empty".to_string(), |e| e.to_string());
            return Err(SendError::NoRoots(why));
        }
        Sender::with_roots(roots, policy)
    }

    /// A sender that trusts `roots` only (a private CA, tests) and connects
    /// where `policy` allows.
    pub fn with_roots(roots: rustls::RootCertStore, policy: Policy) -> Result<Sender, SendError> {
        let connector = https_connector(roots, policy)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        Ok(Sender { client })
    }

    /// POSTs `body` as `application/json` to `url` with `headers` added,
    /// and returns the answer's status. Redirects are not followed (a 3xx
    /// is returned like any status); at most [`MAX_ANSWER_BYTES`] of the
    /// answer are read; everything, connecting included, happens within
    /// `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<u16, SendError> {
        let req = request(url, body, headers)?;
        let exchange = async {
            let answer = self
                .client
                .request(req)
                .await
                .map_err(|e| match refusal(&e) {
                    Some(detail) => SendError::Refused { detail },
                    None => SendError::Request { detail: chain(&e) },
                })?;
            let status = answer.status().as_u16();
            let mut body = answer.into_body();
            let mut read = 0usize;
            while read < MAX_ANSWER_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    // The status is known: a body cut short changes nothing.
                    Some(Err(_)) | None => break,
                }
            }
            Ok(status)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout(timeout))?
    }
}

/// HTTP and HTTPS (rustls with ring, HTTP/2 by ALPN or HTTP/1.1) trusting
/// `roots`, over TCP connections only to where `policy` allows.
pub(crate) fn https_connector(
    roots: rustls::RootCertStore,
    policy: Policy,
) -> Result<HttpsConnector<GuardedConnector>, SendError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(GuardedConnector::new(policy)))
}

/// The TCP connector under TLS: resolves the URI's host (or reads it as an
/// IP literal), keeps the addresses `policy` allows, and connects to the
/// first of them that answers. Nothing else picks the address.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    policy: Arc<Policy>,
}

/// The connector's refusal: no address of the host may be reached.
#[derive(Debug, Error)]
#[error("{0}")]
struct PolicyRefusal(String);

impl GuardedConnector {
    pub fn new(policy: Policy) -> GuardedConnector {
        GuardedConnector {
            policy: Arc::new(policy),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move { connect(&policy, &uri).await })
    }
}

/// What [`GuardedConnector`] does for one URI.
async fn connect(policy: &Policy, uri: &Uri) -> Result<TokioIo<TcpStream>, BoxError> {
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving the host: {e}"))?
            .collect(),
    };
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        resolved.into_iter().partition(|a| policy.allows(a.ip()));
    if allowed.is_empty() {
        let list: Vec<String> = refused.iter().map(ToString::to_string).collect();
        return Err(Box::new(PolicyRefusal(format!(
            "destination not allowed: {} is in a network notifications may not reach \
             (loopback, private, link-local, ...; see --notify-allow-network)",
            if list.is_empty() {
                "no address".to_string()
            } else {
                list.join(", ")
            }
        ))));
    }
    let mut last = None;
    for addr in allowed {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(TokioIo::new(tcp));
            }
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(last
        .unwrap_or_else(|| "no address to connect to".to_string())
        .into())
}

/// The policy's refusal somewhere in `e`'s causes, if that is why it failed.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<PolicyRefusal>() {
            return Some(r.0.clone());
        }
        source = s.source();
    }
    None
}

/// The request for [`Sender::post_json`].
fn request(
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Result<Request<Full<Bytes>>, SendError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| SendError::Url(format!("not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(SendError::Url(
                "only http:// and https:// URLs are supported".to_string(),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(SendError::Url("the URL has no host".to_string()));
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SendError::Url(e.to_string()))?;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
    for (name, value) in headers {
        let bad = |reason: String| SendError::Header {
            name: name.to_string(),
            reason,
        };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let v = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
        h.insert(n, v);
    }
    Ok(req)
}

/// An error with its causes (hyper's own message alone says little).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`: GitHub's
/// `X-Hub-Signature-256` scheme.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
