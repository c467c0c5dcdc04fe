//! The notification client against tiny local HTTP servers: what it sends,
//! what it does not follow or read, and where it refuses to connect
//! without an allowance (loopback, private, link-local, in every spelling).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::http::webhook::{self, Format};
use crate::outbound::egress::Policy;

/// What the test server saw of each request.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

/// Serves plain HTTP/1.1 on loopback: `/status/N` answers N, `/redirect`
/// answers 302 to `/target`, `/big` answers 10 MB; every request is recorded.
async fn server() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let headers = req.headers().clone();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        record
                            .lock()
                            .expect("lock")
                            .push((path.clone(), headers, body));
                        let answer = if let Some(n) = path.strip_prefix("/status/") {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *r.status_mut() = n
                                .parse::<u16>()
                                .ok()
                                .and_then(|n| StatusCode::from_u16(n).ok())
                                .unwrap_or(StatusCode::BAD_REQUEST);
                            r
                        } else if path == "/redirect" {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = StatusCode::FOUND;
                            r.headers_mut()
                                .insert("location", http::HeaderValue::from_static("/target"));
                            r
                        } else if path == "/big" {
                            Response::new(Full::new(Bytes::from(vec![b'x'; 10 * 1024 * 1024])))
                        } else {
                            Response::new(Full::new(Bytes::from_static(b"ok")))
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A sender allowed to reach loopback (where the test servers are).
fn sender() -> Sender {
    let loopback = vec!["127.0.0.0/8".parse().expect("cidr")];
    Sender::with_roots(rustls::RootCertStore::empty(), Policy::new(loopback)).expect("sender")
}

/// A sender with the default policy: public addresses only.
fn public_only() -> Sender {
    Sender::with_roots(rustls::RootCertStore::empty(), Policy::default()).expect("sender")
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn statuses_are_returned_and_headers_sent() {
    let (addr, seen) = server().await;
    let s = sender();
    let body = br#"{"execution":"ex-1","status":"succeeded"}"#.to_vec();
    let sig = signature(b"notify-secret", &body);
    let status = s
        .post_json(
            &format!("http://{addr}/status/204"),
            body.clone(),
            &[
                ("X-Hub-Signature-256", sig),
                ("X-Ferry-Event", "execution".to_string()),
            ],
            LONG,
        )
        .await
        .expect("sent");
    assert_eq!(status, 204);
    let status = s
        .post_json(
            &format!("http://{addr}/status/500"),
            b"{}".to_vec(),
            &[],
            LONG,
        )
        .await
        .expect("a 500 is an answer");
    assert_eq!(status, 500);

    let seen = seen.lock().expect("lock").clone();
    let (path, headers, got) = &seen[0];
    assert_eq!(path, "/status/204");
    assert_eq!(got.as_ref(), body.as_slice());
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-ferry-event"], "execution");
    assert!(
        headers["user-agent"]
            .to_str()
            .expect("ascii")
            .starts_with("ferry-coordinator/")
    );
    // The receiver checks the signature as it would GitHub's.
    assert_eq!(
        webhook::verify(Format::GitHub, headers, b"notify-secret", got),
        Ok(())
    );
    assert!(webhook::verify(Format::GitHub, headers, b"other", got).is_err());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, seen) = server().await;
    let status = sender()
        .post_json(
            &format!("http://{addr}/redirect"),
            b"{}".to_vec(),
            &[],
            LONG,
        )
        .await
        .expect("sent");
    assert_eq!(status, 302);
    let paths: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(paths, ["/redirect"]);
}

#[tokio::test]
async fn large_answers_are_not_read_whole() {
    let (addr, _) = server().await;
    let status = sender()
        .post_json(&format!("http://{addr}/big"), b"{}".to_vec(), &[], LONG)
        .await
        .expect("sent");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            open.push(tcp);
        }
    });
    let began = Instant::now();
    let err = sender()
        .post_json(
            &format!("http://{addr}/"),
            b"{}".to_vec(),
            &[],
            Duration::from_millis(500),
        )
        .await
        .expect_err("no answer");
    assert!(matches!(err, SendError::Timeout(_)), "{err}");
    assert!(began.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test]
async fn bad_urls_and_headers_are_refused() {
    let s = sender();
    for url in [
        "not a url",
        "ftp://example.com/x",
        "/relative",
        "http:///path",
    ] {
        let err = s
            .post_json(url, Vec::new(), &[], LONG)
            .await
            .expect_err(url);
        assert!(matches!(err, SendError::Url(_)), "{url}: {err}");
    }
    let err = s
        .post_json(
            "http://127.0.0.1:9/",
            Vec::new(),
            &[("bad header", "x".to_string())],
            LONG,
        )
        .await
        .expect_err("bad header");
    assert!(matches!(err, SendError::Header { .. }), "{err}");
    let err = s
        .post_json(
            "http://127.0.0.1:9/",
            Vec::new(),
            &[("x-ok", "line\nbreak".to_string())],
            LONG,
        )
        .await
        .expect_err("bad value");
    assert!(matches!(err, SendError::Header { .. }), "{err}");
}

#[tokio::test]
async fn refused_connections_are_errors() {
    // Bind and drop to find a port nobody listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let err = sender()
        .post_json(&format!("http://{addr}/"), b"{}".to_vec(), &[], LONG)
        .await
        .expect_err("refused");
    assert!(matches!(err, SendError::Request { .. }), "{err}");
}

#[tokio::test]
async fn internal_destinations_are_refused_without_an_allowance() {
    let (addr, seen) = server().await;
    let port = addr.port();
    let s = public_only();
    for url in [
        format!("http://{addr}/status/204"),
        format!("http://localhost:{port}/status/204"),
        format!("http://127.1:{port}/status/204"),
        format!("http://2130706433:{port}/status/204"),
        format!("http://0x7f000001:{port}/status/204"),
        format!("http://[::ffff:127.0.0.1]:{port}/status/204"),
        format!("http://[::ffff:7f00:1]:{port}/status/204"),
        format!("http://[::1]:{port}/status/204"),
        format!("https://127.0.0.1:{port}/status/204"),
        // Not connected to at all: refused before any packet leaves.
        "http://10.0.0.1/".to_string(),
        "http://192.168.1.1:8080/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://100.64.0.1/".to_string(),
        "http://0.0.0.0/".to_string(),
        "http://[fd00::1]/".to_string(),
        "http://[fe80::1]/".to_string(),
    ] {
        let err = s
            .post_json(&url, b"{}".to_vec(), &[], Duration::from_secs(5))
            .await
            .expect_err(&url);
        assert!(matches!(err, SendError::Refused { .. }), "{url}: {err:?}");
        assert!(
            err.detail().contains("destination not allowed"),
            "{url}: {}",
            err.detail()
        );
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "a request got through"
    );
}

#[tokio::test]
async fn refused_and_unreachable_read_the_same() {
    // A closed port on an allowed network, and an open one on a refused
    // network: what a viewer reads must not tell them apart.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let unreachable = sender()
        .post_json(&format!("http://{closed}/"), b"{}".to_vec(), &[], LONG)
        .await
        .expect_err("closed");
    let (open, _) = server().await;
    let refused = public_only()
        .post_json(&format!("http://{open}/"), b"{}".to_vec(), &[], LONG)
        .await
        .expect_err("refused");
    assert!(matches!(unreachable, SendError::Request { .. }));
    assert!(matches!(refused, SendError::Refused { .. }));
    assert_eq!(unreachable.to_string(), refused.to_string());
    assert_eq!(refused.to_string(), UNREACHABLE);
    // The reasons differ, for the coordinator's own log.
    assert_ne!(unreachable.detail(), refused.detail());
}

#[tokio::test]
async fn an_allowance_opens_its_network_and_no_other() {
    let (addr, seen) = server().await;
    let only_loopback = Policy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
    let s = Sender::with_roots(rustls::RootCertStore::empty(), only_loopback).expect("sender");
    let status = s
        .post_json(
            &format!("http://localhost:{}/status/204", addr.port()),
            b"{}".to_vec(),
            &[],
            LONG,
        )
        .await
        .expect("allowed");
    assert_eq!(status, 204);
    assert_eq!(seen.lock().expect("lock").len(), 1);
    let err = s
        .post_json("http://10.0.0.1/", b"{}".to_vec(), &[], LONG)
        .await
        .expect_err("another network");
    assert!(matches!(err, SendError::Refused { .. }), "{err:?}");
}

#[test]
fn signature_matches_githubs_scheme() {
    assert_eq!(
        signature(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}
