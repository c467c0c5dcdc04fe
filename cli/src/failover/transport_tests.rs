//! The transport against in-process members (plain HTTP/2, no TLS): which
//! failures move a call to the next member, and which end it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;

use ferry_proto as pb;
use tokio::io::AsyncReadExt;

use super::*;

/// What a fake member answers, in turn (then OK).
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    Status(Code, &'static str, bool),
    /// Drops the call unanswered (the stream is reset).
    Break,
}

/// A member that answers every call from its script, except health
/// checks, which it answers at once (they are not counted).
#[derive(Clone)]
struct Fake {
    script: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<AtomicUsize>,
}

impl tower::Service<http::Request<Body>> for Fake {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let reply = if req.uri().path() == "/grpc.health.v1.Health/Check" {
            Reply::Ok
        } else {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.script
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front()
                .unwrap_or(Reply::Ok)
        };
        Box::pin(async move {
            Ok(match reply {
                Reply::Ok => {
                    // One empty message (flag 0, length 0), then status OK.
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let body = Full::new(tonic::codegen::Bytes::from_static(&[0; 5]))
                        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
                    let mut response = http::Response::new(Body::new(body));
                    response.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/grpc"),
                    );
                    response
                }
                Reply::Status(code, message, marked) => {
                    let mut status = tonic::Status::new(code, message);
                    if marked {
                        status.metadata_mut().insert(
                            NOT_APPLIED,
                            tonic::metadata::MetadataValue::from_static("1"),
                        );
                    }
                    status.into_http()
                }
                // Unwinding ends the task that serves the stream
                // (without the panic hook's message).
                Reply::Break => std::panic::resume_unwind(Box::new("break the stream")),
            })
        })
    }
}

async fn fake(script: &[Reply]) -> (SocketAddr, Arc<AtomicUsize>) {
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = incoming
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    let fake = Fake {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let calls = fake.calls.clone();
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(fake, incoming));
    (addr, calls)
}

/// A member that takes the request and drops the connection unanswered.
async fn breaker() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            // Read until the client has been quiet for a moment: its
            // request has arrived.
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(300), socket.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
            }
        }
    });
    addr
}

/// An address nothing listens on.
async fn nothing() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"))
}

fn failover(addrs: &[SocketAddr], retry_for: Duration) -> Failover {
    let members = addrs
        .iter()
        .map(|a| {
            let endpoint = Endpoint::from_shared(format!("http://{a}"))
                .unwrap_or_else(|e| panic!("{e}"))
                .connect_timeout(Duration::from_secs(2));
            let target = Target {
                authority: a.to_string(),
                host: a.ip().to_string(),
            };
            Member::lazy(target, endpoint)
        })
        .collect();
    Failover::new(members, 0, retry_for)
}

/// A write that is not idempotent.
async fn revoke(f: &Failover) -> Result<(), tonic::Status> {
    pb::access_client::AccessClient::new(f.clone())
        .revoke_role(pb::RoleRequest::default())
        .await
        .map(drop)
}

async fn list(f: &Failover) -> Result<(), tonic::Status> {
    pb::access_client::AccessClient::new(f.clone())
        .list_role_bindings(pb::ListRoleBindingsRequest::default())
        .await
        .map(drop)
}

fn call_error(status: &tonic::Status) -> &CallError {
    status
        .source()
        .and_then(|s| s.downcast_ref::<CallError>())
        .unwrap_or_else(|| panic!("not the transport's own error: {status:?}"))
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_member_that_cannot_be_reached_is_passed_over_and_the_next_call_starts_at_the_one_that_answered()
 {
    let down = nothing().await;
    let (up, calls) = fake(&[]).await;
    let f = failover(&[down, up], 10 * SECOND);
    revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(f.shared.current.load(Ordering::SeqCst), 1);
    list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_write_moves_on_only_when_marked_or_in_v01_words() {
    let (a, a_calls) = fake(&[
        Reply::Status(Code::Unavailable, "anything", true),
        Reply::Status(Code::Unavailable, V01_NO_LEADER, false),
    ])
    .await;
    let (b, b_calls) = fake(&[Reply::Status(
        Code::Unavailable,
        "this coordinator is not the leader; the leader is member 3",
        false,
    )])
    .await;
    let f = failover(&[a, b], 10 * SECOND);
    // a (marked) → b (v0.1's words) → a (v0.1's words) → b: answers.
    revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(a_calls.load(Ordering::SeqCst), 2);
    assert_eq!(b_calls.load(Ordering::SeqCst), 2);

    let (a, a_calls) = fake(&[Reply::Status(
        Code::Unavailable,
        "could not reach the leader",
        false,
    )])
    .await;
    let (b, b_calls) = fake(&[]).await;
    let f = failover(&[a, b], 10 * SECOND);
    let status = revoke(&f).await.expect_err("not sent again");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "could not reach the leader");
    assert_eq!(
        (
            a_calls.load(Ordering::SeqCst),
            b_calls.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn a_read_moves_on_after_any_unavailable_but_not_after_other_answers() {
    let (a, _) = fake(&[
        Reply::Status(
            Code::Unavailable,
            "this coordinator has stopped serving",
            false,
        ),
        Reply::Status(Code::PermissionDenied, "may not", false),
    ])
    .await;
    let (b, b_calls) = fake(&[]).await;
    let f = failover(&[a, b], 10 * SECOND);
    list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    // b answered last: the next call starts there.
    f.shared.current.store(0, Ordering::SeqCst);
    let status = list(&f).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_broken_write_is_ambiguous_and_not_sent_again_but_a_read_is() {
    let (broken, _) = fake(&[Reply::Break, Reply::Break]).await;
    let (up, calls) = fake(&[]).await;
    let f = failover(&[broken, up], 10 * SECOND);
    let status = revoke(&f).await.expect_err("ambiguous");
    let CallError::Ambiguous {
        coordinator, check, ..
    } = call_error(&status)
    else {
        panic!("{status:?}")
    };
    assert_eq!(
        (coordinator.as_str(), *check),
        (broken.to_string().as_str(), "ferry rbac list")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not sent again");
    list(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_member_that_breaks_off_the_first_call_gets_no_write() {
    // As a member that refuses our client certificate after the
    // handshake does: the write goes to the next member.
    let broken = breaker().await;
    let (up, calls) = fake(&[]).await;
    let f = failover(&[broken, up], 10 * SECOND);
    revoke(&f).await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Only such members: it is the certificate, everywhere.
    let f = failover(&[breaker().await, breaker().await], 10 * SECOND);
    let started = std::time::Instant::now();
    let status = revoke(&f).await.expect_err("refused");
    assert!(started.elapsed() < 5 * SECOND);
    let text = crate::errors::render(&status.into());
    assert!(
        text.starts_with(crate::errors::CLIENT_CERT_REFUSED),
        "{text}"
    );
}

#[tokio::test]
async fn a_write_answered_with_a_read_after_it_does_not_trust_the_mark() {
    let (a, _) = fake(&[Reply::Status(Code::Unavailable, V01_NO_LEADER, true)]).await;
    let (b, b_calls) = fake(&[]).await;
    let f = failover(&[a, b], 10 * SECOND);
    let status = pb::agents_client::AgentsClient::new(f.clone())
        .drain_agent(pb::AgentRequest::default())
        .await
        .expect_err("not sent again");
    assert_eq!(status.message(), V01_NO_LEADER);
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn nothing_answering_fails_after_the_bound_naming_every_address() {
    let (a, b) = (nothing().await, nothing().await);
    let f = failover(&[a, b], SECOND);
    let started = std::time::Instant::now();
    let status = revoke(&f).await.expect_err("nothing answers");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < 5 * SECOND,
        "{elapsed:?}"
    );
    let text = crate::errors::render(&status.into());
    assert!(
        text.starts_with("no coordinator answered within --retry-for 1 s:"),
        "{text}"
    );
    for addr in [a, b] {
        assert!(text.contains(&format!("\n  {addr}: ")), "{text}");
    }
    // --retry-for 0: one attempt, at once.
    let f = failover(&[a, b], Duration::ZERO);
    let started = std::time::Instant::now();
    let status = revoke(&f).await.expect_err("nothing answers");
    assert!(started.elapsed() < SECOND);
    let CallError::NoAnswer { failures, .. } = call_error(&status) else {
        panic!("{status:?}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
}
