//! The notification client against tiny local HTTP servers.

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

fn sender() -> Sender {
    Sender::with_roots(rustls::RootCertStore::empty()).expect("sender")
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
    assert!(matches!(err, SendError::Request(_)), "{err}");
}

#[test]
fn signature_matches_githubs_scheme() {
    assert_eq!(
        signature(b"It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}
