//! Outgoing HTTP(S) for notifications: one JSON `POST` at a time, bounded
//! in every way the receiver could stretch it — no redirects followed, the
//! whole exchange under one deadline, at most [`MAX_ANSWER_BYTES`] of the
//! answer read (and thrown away). The caller decides what a status means.
//!
//! [`signature`] signs a body the way GitHub signs its webhooks, so the
//! receivers of Ferry's notifications can reuse their GitHub code.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use thiserror::Error;

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
    /// Connecting, TLS or the exchange failed.
    #[error("the request failed: {0}")]
    Request(String),
}

/// Sends notifications; cheap to clone (connections are pooled).
#[derive(Clone, Debug)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Sender {
    /// A sender that trusts the operating system's root certificates.
    /// Certificates the store holds but rustls cannot use are skipped (and
    /// logged); it fails only when none is usable.
    pub fn native() -> Result<Sender, SendError> {
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
        Sender::with_roots(roots)
    }

    /// A sender that trusts `roots` only (a private CA, tests).
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Sender, SendError> {
        let connector = https_connector(roots)?;
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
                .map_err(|e| SendError::Request(chain(&e)))?;
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

/// HTTP and HTTPS (rustls with ring, HTTP/2 by ALPN or HTTP/1.1) trusting `roots`.
pub(crate) fn https_connector(
    roots: rustls::RootCertStore,
) -> Result<HttpsConnector<HttpConnector>, SendError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http))
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
