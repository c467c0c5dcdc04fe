//! The webhook routes end to end: real TLS over loopback with a throwaway
//! CA, the listener of `server.rs`, and a fake sink in place of Raft.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::http::server::serve;
use crate::http::webhook::RefKind;
use crate::http::webhook::tests::{GITEA_PUSH, GITHUB_PUSH, GITLAB_PUSH, github_signature};
use crate::outbound::client::{GuardedConnector, https_connector};
use crate::outbound::egress::Policy;

const SECRET: &[u8] = b"s3cret-of-the-pipeline";

/// The test servers listen on loopback, which clients reach only when allowed.
fn loopback() -> Policy {
    Policy::new(vec!["127.0.0.0/8".parse().expect("cidr")])
}

/// Pipelines: `web` (the secret above), `nosecret` (none set), `down`
/// (the cluster is unavailable when it pushes); any other is unknown.
#[derive(Clone, Default)]
struct Fake {
    pushes: Arc<Mutex<Vec<(String, String, GitPush)>>>,
}

impl Fake {
    fn pushes(&self) -> Vec<(String, String, GitPush)> {
        self.pushes.lock().expect("lock").clone()
    }
}

impl HookSink for Fake {
    async fn webhook_secret(&self, pipeline: &str) -> OpResult<Vec<u8>> {
        match pipeline {
            "web" | "down" => Ok(SECRET.to_vec()),
            "nosecret" => Err(OpError::FailedPrecondition(format!(
                "pipeline {pipeline}'s source sets no webhook_secret"
            ))),
            _ => Err(OpError::NotFound(format!("pipeline {pipeline} not found"))),
        }
    }

    async fn push(&self, pipeline: &str, delivery: &str, push: GitPush) -> OpResult<HookAnswer> {
        if pipeline == "down" {
            return Err(OpError::Unavailable("no leader right now".to_string()));
        }
        let mut pushes = self.pushes.lock().expect("lock");
        if let Some(i) = pushes.iter().position(|(_, d, _)| d == delivery) {
            return Ok(HookAnswer::AlreadyDelivered {
                execution: Some(format!("ex-{}", i + 1)),
            });
        }
        if push.deleted {
            return Ok(HookAnswer::Ignored("the ref was deleted".to_string()));
        }
        let revision = push.after.clone();
        pushes.push((pipeline.to_string(), delivery.to_string(), push));
        Ok(HookAnswer::Started {
            execution: format!("ex-{}", pushes.len()),
            revision,
        })
    }
}

struct Harness {
    addr: SocketAddr,
    sink: Fake,
    roots: rustls::RootCertStore,
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Reply {
    version: http::Version,
    status: u16,
    headers: HeaderMap,
    json: serde_json::Value,
}

async fn start(limits: HttpLimits) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ferry_certs::CertAuthority::init(&dir.path().join("ca"), "ferry").expect("CA");
    let pair = ca
        .issue_coordinator(1, &["127.0.0.1".to_string()])
        .expect("certificate");
    let tls = ferry_certs::tls::https_server_config(&pair.cert_pem, &pair.key_pem).expect("tls");
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca.ca_pem().as_bytes()) {
        roots.add(der.expect("pem")).expect("root");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sink = Fake::default();
    let app = router(sink.clone(), &limits);
    let task = tokio::spawn(serve(
        listener,
        tls,
        ferry_certs::listen::Limits::default(),
        limits,
        app,
    ));
    let client = Client::builder(TokioExecutor::new())
        .build(https_connector(roots.clone(), loopback()).expect("connector"));
    Harness {
        addr,
        sink,
        roots,
        client,
        task,
        _dir: dir,
    }
}

impl Harness {
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let answer = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .expect("answered in time")
            .expect("answered");
        let version = answer.version();
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let bytes = answer.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            version,
            status,
            headers,
            json,
        }
    }

    async fn github(&self, pipeline: &str, event: &str, delivery: &str, body: &str) -> Reply {
        let sig = github_signature(SECRET, body.as_bytes());
        self.request(
            "POST",
            &format!("/hooks/git/{pipeline}"),
            &[
                ("x-github-event", event.to_string()),
                ("x-github-delivery", delivery.to_string()),
                ("x-hub-signature-256", sig),
                ("content-type", "application/json".to_string()),
            ],
            body.as_bytes(),
        )
        .await
    }

    /// A raw HTTP/1.1-over-TLS connection (for what a well-behaved client
    /// would not do).
    async fn raw(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::IpAddress(self.addr.ip().into());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("handshake")
    }
}

fn message(r: &Reply) -> String {
    r.json["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn github_push_reaches_the_sink_once() {
    let h = start(HttpLimits::default()).await;
    let r = h.github("web", "push", "d-1", GITHUB_PUSH).await;
    assert_eq!(r.status, 201, "{}", r.json);
    // The client offers h2 by ALPN, and the listener takes it.
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.json["ok"], true);
    assert_eq!(r.json["execution"], "ex-1");
    assert_eq!(
        r.json["revision"],
        "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let pushes = h.sink.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].0, "web");
    assert_eq!(pushes[0].1, "d-1");
    assert_eq!(pushes[0].2.kind, RefKind::Branch);
    assert_eq!(pushes[0].2.name, "main");

    // GitHub's "Redeliver" sends the same delivery id again.
    let r = h.github("web", "push", "d-1", GITHUB_PUSH).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["execution"], "ex-1");
    assert_eq!(h.sink.pushes().len(), 1);
}

#[tokio::test]
async fn gitlab_and_gitea_pushes() {
    let h = start(HttpLimits::default()).await;
    let r = h
        .request(
            "POST",
            "/hooks/git/web",
            &[
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitlab-token", String::from_utf8_lossy(SECRET).into()),
                (
                    "x-gitlab-event-uuid",
                    "13792a34-cac6-4fda-95a8-c58e00a3954e".to_string(),
                ),
                ("content-type", "application/json".to_string()),
            ],
            GITLAB_PUSH.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);

    let sig = github_signature(SECRET, GITEA_PUSH.as_bytes());
    let r = h
        .request(
            "POST",
            "/hooks/git/web",
            &[
                ("x-gitea-event", "push".to_string()),
                ("x-github-event", "push".to_string()),
                (
                    "x-gitea-delivery",
                    "f6266f16-1bf3-46a5-9ea4-602e06ead473".to_string(),
                ),
                (
                    "x-gitea-signature",
                    sig.trim_start_matches("sha256=").to_string(),
                ),
                ("content-type", "application/json".to_string()),
            ],
            GITEA_PUSH.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let pushes = h.sink.pushes();
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].1, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    assert_eq!(pushes[0].2.name, "master");
    assert_eq!(pushes[1].1, "f6266f16-1bf3-46a5-9ea4-602e06ead473");
    assert_eq!(pushes[1].2.name, "develop");
}

#[tokio::test]
async fn missing_or_wrong_proof_is_401() {
    let h = start(HttpLimits::default()).await;
    let r = h
        .request(
            "POST",
            "/hooks/git/web",
            &[("x-github-event", "push".to_string())],
            GITHUB_PUSH.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["ok"], false);
    assert!(
        message(&r).starts_with("missing X-Hub-Signature-256"),
        "{}",
        r.json
    );

    let wrong = github_signature(b"not the secret", GITHUB_PUSH.as_bytes());
    let r = h
        .request(
            "POST",
            "/hooks/git/web",
            &[
                ("x-github-event", "push".to_string()),
                ("x-hub-signature-256", wrong),
            ],
            GITHUB_PUSH.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(message(&r).contains("does not match"), "{}", r.json);
    // The secret is never echoed.
    assert!(!r.json.to_string().contains("s3cret"));

    let r = h
        .request(
            "POST",
            "/hooks/git/web",
            &[
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitlab-token", "guess".to_string()),
            ],
            GITLAB_PUSH.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(h.sink.pushes().is_empty());
}

#[tokio::test]
async fn ping_other_events_and_health() {
    let h = start(HttpLimits::default()).await;
    let r = h
        .github("web", "ping", "p-1", r#"{"zen":"Design for failure."}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, serde_json::json!({"ok": true, "event": "ping"}));

    let r = h
        .github("web", "issues", "i-1", r#"{"action":"opened"}"#)
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json["event"], "issues");

    let r = h.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json, serde_json::Value::String("ok".to_string()));
    assert!(h.sink.pushes().is_empty());
}

#[tokio::test]
async fn sink_errors_map_to_statuses() {
    let h = start(HttpLimits::default()).await;
    let r = h.github("nope", "push", "d", GITHUB_PUSH).await;
    assert_eq!(r.status, 404);
    assert!(message(&r).contains("not found"), "{}", r.json);

    let r = h.github("nosecret", "push", "d", GITHUB_PUSH).await;
    assert_eq!(r.status, 412);

    let r = h.github("down", "push", "d", GITHUB_PUSH).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );

    // Not a pipeline name: refused before any lookup.
    let r = h.github("Not_A_Name", "push", "d", GITHUB_PUSH).await;
    assert_eq!(r.status, 400, "{}", r.json);
    let long = "a".repeat(200);
    let r = h.github(&long, "push", "d", GITHUB_PUSH).await;
    assert_eq!(r.status, 400);

    // Not a webhook at all.
    let r = h.request("POST", "/hooks/git/web", &[], b"{}").await;
    assert_eq!(r.status, 400);

    // A signed but malformed payload.
    let r = h
        .github("web", "push", "d", r#"{"ref":"refs/heads/main"}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("missing field `after`"), "{}", r.json);

    // A deleted branch is ignored by this sink.
    let deleted = GITHUB_PUSH
        .replace(
            "\"after\": \"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c\"",
            "\"after\": \"0000000000000000000000000000000000000000\"",
        )
        .replace("\"deleted\": false", "\"deleted\": true");
    let r = h.github("web", "push", "del-1", &deleted).await;
    assert_eq!(r.status, 202, "{}", r.json);
    assert_eq!(message(&r), "the ref was deleted");

    // Only POST.
    let r = h.request("GET", "/hooks/git/web", &[], b"").await;
    assert_eq!(r.status, 405);
}

/// Reads from a raw connection until the headers of an answer are in,
/// or it closes.
async fn read_answer(conn: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer in time"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn oversized_bodies_get_413_and_the_server_carries_on() {
    let h = start(HttpLimits::default()).await;
    let sig = github_signature(SECRET, b"x");

    // Declared 10 MB: refused before the body is read.
    let mut conn = h.raw().await;
    let head = format!(
        "POST /hooks/git/web HTTP/1.1\r\nHost: ferry\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(&[b' '; 16 * 1024]).await.expect("write");
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(conn);

    // Chunked, no length declared: cut off once past the limit.
    let mut conn = h.raw().await;
    let head = format!(
        "POST /hooks/git/web HTTP/1.1\r\nHost: ferry\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let chunk = [b' '; 64 * 1024];
    // 1 MiB + 128 KiB, then wait for the answer (a client would go on to
    // 10 MB; the server has stopped reading by then).
    for _ in 0..18 {
        let size = format!("{:x}\r\n", chunk.len());
        if conn.write_all(size.as_bytes()).await.is_err()
            || conn.write_all(&chunk).await.is_err()
            || conn.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(conn);

    // The server still serves.
    let r = h.github("web", "push", "after-413", GITHUB_PUSH).await;
    assert_eq!(r.status, 201, "{}", r.json);
}

#[tokio::test]
async fn over_the_rate_limit_gets_429() {
    let limits = HttpLimits {
        per_minute: std::num::NonZeroU32::new(3).expect("nonzero"),
        ..HttpLimits::default()
    };
    let h = start(limits).await;
    for i in 0..3 {
        let r = h
            .github("web", "push", &format!("r-{i}"), GITHUB_PUSH)
            .await;
        assert_ne!(r.status, 429, "request {i}");
    }
    let r = h.github("web", "push", "r-4", GITHUB_PUSH).await;
    assert_eq!(r.status, 429, "{}", r.json);
    let wait: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Health checks are not counted.
    let r = h.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let h = start(limits).await;
    let mut conn = h.raw().await;
    let began = Instant::now();
    conn.write_all(b"POST /hooks/git/web HTTP/1.1\r\nHost: ferry\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let closed = loop {
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "a slow client was not cut off"
        );
        if conn.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break began.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Err(_) => continue,
            // Closed, reset, or an error answer: cut off either way.
            Ok(_) => break began.elapsed(),
        }
    };
    assert!(
        closed >= Duration::from_millis(900),
        "cut off too early: {closed:?}"
    );
    // Others are still served.
    let r = h.request("GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn slow_bodies_run_into_the_request_deadline() {
    let limits = HttpLimits {
        request_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let h = start(limits).await;
    let mut conn = h.raw().await;
    let sig = github_signature(SECRET, GITHUB_PUSH.as_bytes());
    let head = format!(
        "POST /hooks/git/web HTTP/1.1\r\nHost: ferry\r\nX-GitHub-Event: push\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{{",
        GITHUB_PUSH.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(h.sink.pushes().is_empty());
}

#[tokio::test]
async fn the_sender_posts_a_signed_push_over_https() {
    let h = start(HttpLimits::default()).await;
    let sender =
        crate::outbound::client::Sender::with_roots(h.roots.clone(), loopback()).expect("sender");
    let body = GITHUB_PUSH.as_bytes().to_vec();
    let sig = crate::outbound::client::signature(SECRET, &body);
    let status = sender
        .post_json(
            &format!("https://{}/hooks/git/web", h.addr),
            body,
            &[
                ("X-GitHub-Event", "push".to_string()),
                ("X-GitHub-Delivery", "sent-1".to_string()),
                ("X-Hub-Signature-256", sig),
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("sent");
    assert_eq!(status, 201);
    assert_eq!(h.sink.pushes()[0].1, "sent-1");
}
