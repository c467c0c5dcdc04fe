//! Graceful stop of a member (SIGTERM, SIGINT), for rolling upgrades without
//! downtime. In order: a leader hands leadership to its most caught-up
//! voter and waits (bounded) until it took over; the member stops taking
//! connections (gRPC and HTTPS) and ends its long-lived streams (agent
//! sessions, watches, followed logs, backups) with `UNAVAILABLE`, so their
//! clients reconnect to another member; it lets the requests in flight
//! finish; then it closes the other members' Raft streams into it (kept
//! until then, since those requests may wait on them) and exits. The whole
//! stop is bounded by `--shutdown-timeout`, and a second signal ends it at
//! once.
//!
//! [`Stop`] is the switch the listeners, [`StopLayer`] and the drain follow;
//! [`Signals`] are the process's stop signals; [`graceful`] runs the stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::watch;
use tonic::Status;

use crate::ops::Ops;
use crate::raft::RaftStatus;

/// What a stream this member ends when it stops says to its client.
pub const STOPPING: &str = "this coordinator is stopping; reconnect to another member";

/// How far a stop has come; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving as usual (also while a leader hands leadership over).
    Serving,
    /// No new connections; long-lived streams end; requests in flight finish.
    Draining,
    /// Requests in flight are done: the other members' Raft streams end too.
    Closing,
}

/// The stop switch: its phase, and how many requests are in flight.
/// Cheap to clone.
#[derive(Clone)]
pub struct Stop {
    phase: Arc<watch::Sender<Phase>>,
    in_flight: Arc<watch::Sender<usize>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop {
            phase: Arc::new(watch::channel(Phase::Serving).0),
            in_flight: Arc::new(watch::channel(0).0),
        }
    }

    /// Moves the stop on to `phase` (never back).
    pub fn enter(&self, phase: Phase) {
        self.phase.send_if_modified(|p| {
            let later = *p < phase;
            if later {
                *p = phase;
            }
            later
        });
    }

    /// Where the stop is now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves once the stop reached `phase` (for listeners, streams and
    /// tonic's shutdown signal).
    pub fn reached(&self, phase: Phase) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.phase.subscribe();
        async move {
            // The sender lives as long as any Stop; if it is gone, so is the server.
            let _ = rx.wait_for(|p| *p >= phase).await;
        }
    }

    /// Resolves once no request is in flight.
    pub fn idle(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.in_flight.subscribe();
        async move {
            let _ = rx.wait_for(|n| *n == 0).await;
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Counts one request in flight until the guard is dropped.
    fn begin(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(self.in_flight.clone())
    }

    /// The tower layer for the gRPC server.
    pub fn layer(&self) -> StopLayer {
        StopLayer { stop: self.clone() }
    }
}

/// One request in flight; counted down when dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The process's stop signals: SIGTERM (service managers) and SIGINT (^C).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes SIGTERM and SIGINT over from their default (exit at once).
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.term.recv() => "SIGTERM",
            Some(()) = self.int.recv() => "SIGINT",
            // Neither can deliver any more (not on a live runtime).
            else => std::future::pending().await,
        }
    }
}

/// How a graceful stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every request finished and every connection closed.
    Drained,
    /// `--shutdown-timeout` passed first.
    TimedOut,
    /// A second signal came first.
    Interrupted,
}

/// Runs a graceful stop after the first signal: hands leadership over,
/// drains (`grpc` is the gRPC server's future, serving with
/// `stop.reached(Phase::Draining)` as its shutdown signal; `https` the
/// HTTPS listener's task, if any), and says how it ended. Bounded by
/// `timeout` as a whole; a second signal from `signals` ends it at once.
pub async fn graceful<G>(
    ops: &Ops,
    stop: &Stop,
    signals: &mut Signals,
    timeout: Duration,
    grpc: Pin<&mut G>,
    https: Option<tokio::task::JoinHandle<()>>,
) -> Ended
where
    G: Future<Output = Result<(), tonic::transport::Error>>,
{
    let work = async {
        hand_over(ops).await;
        stop.enter(Phase::Draining);
        tracing::info!(
            in_flight = stop.in_flight(),
            "no longer taking connections; ending long-lived streams and waiting for requests in flight"
        );
        // Requests in flight (on HTTPS too) may wait on the other members'
        // Raft messages (a read index, a forwarded write applied here):
        // their streams close only once those are done.
        let requests = async {
            let https = async {
                if let Some(task) = https
                    && let Err(e) = task.await
                {
                    tracing::warn!(error = %e, "the HTTPS listener ended abnormally");
                }
            };
            tokio::join!(stop.idle(), https);
            stop.enter(Phase::Closing);
        };
        let ((), served) = tokio::join!(requests, grpc);
        if let Err(e) = served {
            tracing::warn!(error = %e, "the gRPC server ended with an error while stopping");
        }
    };
    tokio::select! {
        () = work => Ended::Drained,
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
        signal = signals.recv() => {
            tracing::warn!(signal, "second stop signal: exiting now");
            Ended::Interrupted
        }
    }
}

/// The voter a leader hands over to when it stops: the one whose log it
/// knows to match furthest (the lowest id among equals). None when this
/// member does not lead or is the only voter.
pub fn successor(status: &RaftStatus) -> Option<u64> {
    if !status.is_leader {
        return None;
    }
    status
        .matched
        .iter()
        .filter(|(id, _)| **id != status.id && !status.learners.contains(id))
        // max_by_key keeps the last of equals: go by (index, lower id).
        .max_by_key(|(id, matched)| (**matched, std::cmp::Reverse(**id)))
        .map(|(id, _)| *id)
}

/// A leader that stops hands leadership over first (the same transfer as
/// `ferry cluster transfer-leader`, bounded by it), so the cluster does
/// not wait an election timeout without one.
async fn hand_over(ops: &Ops) {
    let status = ops.raft_status();
    if !status.is_leader {
        return;
    }
    let Some(to) = successor(&status) else {
        tracing::info!("this member is the only voter: there is no one to hand leadership to");
        return;
    };
    tracing::info!(member = to, "handing leadership over before stopping");
    match ops.transfer_leader(to).await {
        Ok(()) => tracing::info!(member = to, "handed leadership to member {to}"),
        Err(e) => {
            let leader = ops.raft_status().leader_id;
            if leader != status.id && leader != 0 {
                tracing::info!(member = leader, "member {leader} leads now");
            } else {
                tracing::warn!(member = to, error = %e, "leadership did not move; the others elect a leader once this member is gone");
            }
        }
    }
}

/// Tower layer in front of every gRPC service: counts requests in flight
/// (until their handler answers), ends a response stream that waits for
/// more once the stop drains, and ends the other members' Raft streams
/// into this one once it closes.
#[derive(Clone)]
pub struct StopLayer {
    stop: Stop,
}

impl<S> tower::Layer<S> for StopLayer {
    type Service = StopService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        StopService {
            inner,
            stop: self.stop.clone(),
        }
    }
}

#[derive(Clone)]
pub struct StopService<S> {
    inner: S,
    stop: Stop,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Whether `path` is a member's stream of Raft messages into this one.
fn is_raft_stream(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            service == ferry_proto::internal::raft_peer_server::SERVICE_NAME && method == "Stream"
        })
}

impl<S, B> tower::Service<http::Request<B>> for StopService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let stop = self.stop.clone();
        if is_raft_stream(req.uri().path()) {
            // Its handler runs as long as the stream: not a request in flight.
            return Box::pin(async move {
                tokio::select! {
                    r = inner.call(req) => r,
                    () = stop.reached(Phase::Closing) => Ok(Status::unavailable(STOPPING).into_http()),
                }
            });
        }
        let counted = stop.begin();
        Box::pin(async move {
            let answer = inner.call(req).await;
            drop(counted);
            answer.map(|response| {
                response.map(|body| {
                    if body.is_end_stream() {
                        body
                    } else {
                        tonic::body::Body::new(StopBody::new(body, stop.reached(Phase::Draining)))
                    }
                })
            })
        })
    }
}

/// A response body that, once `stop` resolved, ends with `UNAVAILABLE`
/// ([`STOPPING`]) the next time it would wait for more; what it has ready
/// is still sent, and it ends only between messages (tonic yields whole
/// messages).
pub struct StopBody {
    inner: Option<tonic::body::Body>,
    stop: BoxFuture<()>,
}

impl StopBody {
    pub fn new(inner: tonic::body::Body, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        StopBody {
            inner: Some(inner),
            stop: Box::pin(stop),
        }
    }
}

impl HttpBody for StopBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame)),
            Poll::Pending => {
                if this.stop.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Dropping the stream lets its producer see the reader is gone.
                this.inner = None;
                let mut trailers = http::HeaderMap::new();
                match Status::unavailable(STOPPING).add_header(&mut trailers) {
                    Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Err(status) => Poll::Ready(Some(Err(status))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use futures::StreamExt;
    use http_body_util::BodyExt;

    use super::*;

    fn leader(id: u64, matched: &[(u64, u64)], learners: &[u64]) -> RaftStatus {
        RaftStatus {
            id,
            leader_id: id,
            is_leader: true,
            matched: matched.iter().copied().collect::<BTreeMap<_, _>>(),
            learners: learners.iter().copied().collect::<BTreeSet<_>>(),
            ..RaftStatus::default()
        }
    }

    #[test]
    fn the_successor_is_the_most_caught_up_voter() {
        let s = leader(1, &[(1, 50), (2, 40), (3, 48), (4, 50)], &[4]);
        assert_eq!(successor(&s), Some(3), "4 is a learner; 3 is ahead of 2");
        let tie = leader(2, &[(1, 30), (2, 30), (3, 30)], &[]);
        assert_eq!(successor(&tie), Some(1), "the lower id among equals");
        assert_eq!(successor(&leader(1, &[(1, 9)], &[])), None, "alone");
        assert_eq!(successor(&leader(1, &[(1, 9), (2, 9)], &[2])), None);
        let follower = RaftStatus {
            is_leader: false,
            ..leader(1, &[(1, 9), (2, 9)], &[])
        };
        assert_eq!(successor(&follower), None);
    }

    #[test]
    fn only_raft_streams_are_raft_streams() {
        assert!(is_raft_stream("/ferry.internal.v1.RaftPeer/Stream"));
        assert!(!is_raft_stream("/ferry.internal.v1.RaftPeer/Propose"));
        assert!(!is_raft_stream("/ferry.v1.Notifications/WatchEvents"));
        assert!(!is_raft_stream("ferry.internal.v1.RaftPeer/Stream"));
    }

    #[tokio::test]
    async fn phases_only_move_forward() {
        let stop = Stop::new();
        let closing = tokio::spawn(stop.reached(Phase::Closing));
        stop.enter(Phase::Closing);
        stop.enter(Phase::Draining);
        assert_eq!(stop.phase(), Phase::Closing);
        assert!(closing.await.is_ok());
        // Reached already: resolves at once.
        stop.reached(Phase::Draining).await;
    }

    #[tokio::test]
    async fn requests_in_flight_are_counted_until_dropped() {
        let stop = Stop::new();
        let a = stop.begin();
        let b = stop.begin();
        assert_eq!(stop.in_flight(), 2);
        let idle = tokio::spawn(stop.idle());
        drop(a);
        assert!(!idle.is_finished());
        drop(b);
        assert!(idle.await.is_ok());
        assert_eq!(stop.in_flight(), 0);
    }

    /// A body streaming `items` and then waiting for more, forever.
    fn waiting_body(items: &[&'static str]) -> tonic::body::Body {
        let frames = futures::stream::iter(
            items
                .iter()
                .map(|s| Ok::<_, Status>(Frame::data(Bytes::from_static(s.as_bytes()))))
                .collect::<Vec<_>>(),
        )
        .chain(futures::stream::pending());
        tonic::body::Body::new(http_body_util::StreamBody::new(frames))
    }

    #[tokio::test]
    async fn a_waiting_stream_ends_unavailable_once_stopping_and_not_before() {
        let stop = Stop::new();
        let mut body = StopBody::new(waiting_body(&["a", "b"]), stop.reached(Phase::Draining));
        // What is ready is sent; then it waits.
        for want in ["a", "b"] {
            let frame = body.frame().await;
            let data = frame.and_then(|f| f.ok()).and_then(|f| f.into_data().ok());
            assert_eq!(data.as_deref(), Some(want.as_bytes()));
        }
        let waited = tokio::time::timeout(Duration::from_millis(50), body.frame()).await;
        assert!(waited.is_err(), "it waits while serving");
        stop.enter(Phase::Draining);
        let last = body.frame().await;
        let trailers = last
            .and_then(|f| f.ok())
            .and_then(|f| f.into_trailers().ok())
            .unwrap_or_default();
        let status = Status::from_header_map(&trailers);
        assert_eq!(
            status.as_ref().map(Status::code),
            Some(tonic::Code::Unavailable)
        );
        assert_eq!(status.as_ref().map(Status::message), Some(STOPPING));
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_ready_body_is_sent_whole_even_when_stopping() {
        let stop = Stop::new();
        stop.enter(Phase::Draining);
        let frames = futures::stream::iter(vec![
            Ok::<_, Status>(Frame::data(Bytes::from_static(b"all"))),
            Ok(Frame::data(Bytes::from_static(b" of it"))),
        ]);
        let inner = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
        let body = StopBody::new(inner, stop.reached(Phase::Draining));
        let bytes = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(bytes.ok().as_deref(), Some(&b"all of it"[..]));
    }
}
