//! The guarded listener every Ferry gRPC server accepts connections through.
//! Anyone who can reach the port can open a connection before proving who
//! they are, so each connection is bounded before it costs anything lasting:
//! - a cap on open connections in all (when it is reached the listener stops
//!   accepting, so surplus clients wait in the kernel's backlog instead of
//!   taking file descriptors);
//! - a cap per source address (beyond it new connections are closed at once),
//!   so one host cannot take every slot;
//! - an idle deadline: a connection on which nothing moves for that long —
//!   the peer sends nothing and takes nothing the server writes — is
//!   closed. Servers send HTTP/2 pings more often than that, which live
//!   clients answer, and a streamed answer (the console's server-sent events
//!   over HTTP/1.1, where the client says nothing while it listens) counts
//!   while the peer takes its bytes; so only connections that never
//!   completed TLS and HTTP, or stopped answering and reading, run into it.
//!
//! The TLS handshake has its own, shorter deadline (see [`crate::tls`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How many connections a server holds open, and for how long in silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one source address.
    pub per_source: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            per_source: 256,
            idle: Duration::from_secs(60),
        }
    }
}

/// Open connections per source address.
type Sources = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Connections from `listener`, within `limits`, for tonic's
/// `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
) -> impl Stream<Item = std::io::Result<Guarded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let sources: Sources = Arc::default();
    futures::stream::unfold(
        (listener, slots, sources),
        move |(listener, slots, sources)| async move {
            let next = accept(&listener, &slots, &sources, limits).await;
            Some((next, (listener, slots, sources)))
        },
    )
}

/// Waits for a free slot, then for a connection whose source is under its cap.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    sources: &Sources,
    limits: Limits,
) -> std::io::Result<Guarded> {
    let permit = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the listener was shut down"))?;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(e);
            }
        };
        let source = peer.ip();
        let admitted = {
            let mut open = sources.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(source).or_default();
            if *n < limits.per_source {
                *n += 1;
                true
            } else {
                false
            }
        };
        if !admitted {
            tracing::debug!(%source, cap = limits.per_source, "connection refused: too many from one source");
            drop(tcp);
            continue;
        }
        // Small gRPC frames must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        return Ok(Guarded {
            tcp,
            idle: limits.idle,
            deadline: Box::pin(tokio::time::sleep(limits.idle)),
            _slot: SourceSlot {
                sources: sources.clone(),
                source,
                _permit: permit,
            },
        });
    }
}

/// Gives a connection's slots back when it closes.
struct SourceSlot {
    sources: Sources,
    source: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// An accepted connection that fails its reads once nothing has moved on it
/// (no byte read, none written) for its idle deadline.
pub struct Guarded {
    tcp: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: SourceSlot,
}

impl Guarded {
    /// Bytes moved: the idle deadline starts again.
    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Counts a write that the peer took as activity.
    fn wrote(&mut self, result: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
        {
            self.moved();
        }
        result
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer sent nothing within the idle deadline",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

/// TLS connections from `incoming`, for servers that do their own TLS
/// (one whose certificate changes while it runs, see
/// [`crate::tls::ReloadableCert`]). Each handshake runs in its own task with
/// [`crate::tls::HANDSHAKE_TIMEOUT`], so a slow client never holds up the
/// next; failed handshakes are logged and dropped. tonic reads the client
/// certificate from each stream as it does with its own TLS.
pub fn tls_incoming<S>(
    incoming: S,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<Guarded>>> + Send + 'static
where
    S: Stream<Item = std::io::Result<Guarded>> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        let mut incoming = Box::pin(incoming);
        while let Some(conn) = incoming.next().await {
            if tx.is_closed() {
                return;
            }
            let io = match conn {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a connection failed");
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(io)).await
                {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// Raises this process's open-file limit to its hard limit (servers hold a
/// descriptor per connection; the usual soft default of 1,024 is too few).
/// Returns the limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    #[tokio::test]
    async fn silent_connections_are_closed_and_sources_capped() {
        let (l, addr) = listener().await;
        let limits = Limits {
            max_connections: 8,
            per_source: 2,
            idle: Duration::from_millis(300),
        };
        let mut conns = Box::pin(incoming(l, limits));
        let _a = TcpStream::connect(addr).await.expect("connect");
        let _b = TcpStream::connect(addr).await.expect("connect");
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let mut first = conns.next().await.expect("some").expect("ok");
        let _second = conns.next().await.expect("some").expect("ok");
        // The third from the same source is closed without being handed on
        // (the listener drops it while it waits for another).
        let none = tokio::time::timeout(Duration::from_millis(200), conns.next()).await;
        assert!(none.is_err(), "a third connection was handed on");
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut byte))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "third connection left open");
        // A silent connection's read fails at its idle deadline.
        let err = first
            .read(&mut byte)
            .await
            .expect_err("idle read must fail");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(first);
        // Its slot is free again.
        let _d = TcpStream::connect(addr).await.expect("connect");
        let third = tokio::time::timeout(Duration::from_secs(5), conns.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))));
    }

    #[tokio::test]
    async fn a_connection_the_server_streams_to_is_not_idle() {
        use tokio::io::AsyncWriteExt;
        let (l, addr) = listener().await;
        let limits = Limits {
            max_connections: 8,
            per_source: 2,
            idle: Duration::from_millis(300),
        };
        let mut conns = Box::pin(incoming(l, limits));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let server = conns.next().await.expect("some").expect("ok");
        // The client says nothing for well past the deadline while the
        // server writes to it (a server-sent event stream over HTTP/1.1).
        let (mut rd, mut wr) = tokio::io::split(server);
        let reading = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            rd.read(&mut byte).await.map(|_| ())
        });
        for _ in 0..8 {
            wr.write_all(b"keep-alive\n").await.expect("write");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut got = vec![0u8; 88];
        client
            .read_exact(&mut got)
            .await
            .expect("the stream arrived");
        assert!(
            !reading.is_finished(),
            "the idle deadline cut a live stream"
        );
        // Once the server stops writing, the deadline applies again.
        let ended = tokio::time::timeout(Duration::from_secs(5), reading)
            .await
            .expect("ended in time")
            .expect("task");
        assert_eq!(
            ended.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::TimedOut)
        );
    }
}
