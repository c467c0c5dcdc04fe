//! Raft messages between members: one long-lived client stream per peer over
//! mTLS (the coordinator's own certificate), fed from a bounded queue. A full
//! queue or a broken link drops messages — Raft retransmits — and reports the
//! peer unreachable so the leader slows down probing it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ferry_certs::tls::SharedIdentity;
use ferry_proto as pb;
use ferry_state::ClusterState;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// What the transport tells the Raft driver.
pub enum Feedback {
    Unreachable(u64),
    SnapshotSent { to: u64, ok: bool },
}

/// Where each member serves gRPC; shared with whoever learns of changes.
pub type Addresses = Arc<RwLock<BTreeMap<u64, String>>>;

/// TLS material to reach other members.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: String,
    /// This member's certificate, as renewed (each new channel takes the current one).
    pub identity: SharedIdentity,
}

impl PeerTls {
    /// A lazily connecting channel to member `id` at `addr`; the server must
    /// prove it is that member.
    pub fn channel(&self, id: u64, addr: &str) -> Result<Channel, ferry_certs::tls::EndpointError> {
        let expect = ferry_certs::tls::Expected::Member(id);
        Ok(
            ferry_certs::tls::endpoint(addr, &self.ca_pem, Some(&self.identity.current()), expect)?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .connect_lazy(),
        )
    }
}

pub struct Transport {
    runtime: tokio::runtime::Handle,
    tls: PeerTls,
    addresses: Addresses,
    links: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    feedback: std::sync::mpsc::Sender<Feedback>,
    state: Arc<RwLock<ClusterState>>,
}

/// The request header that names the sender's cluster on a Raft stream
/// (`ClusterState::cluster_id`); the receiver refuses another cluster's.
pub const CLUSTER_ID_HEADER: &str = "ferry-cluster-id";

const QUEUE: usize = 4096;

impl Transport {
    pub fn new(
        runtime: tokio::runtime::Handle,
        tls: PeerTls,
        addresses: Addresses,
        feedback: std::sync::mpsc::Sender<Feedback>,
        state: Arc<RwLock<ClusterState>>,
    ) -> Self {
        Transport {
            runtime,
            tls,
            addresses,
            links: Mutex::default(),
            feedback,
            state,
        }
    }

    /// Queues a message for its recipient; never blocks the Raft thread.
    pub fn send(&self, msg: Message) {
        let to = msg.to;
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let link = links.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let tls = self.tls.clone();
            let addresses = self.addresses.clone();
            let feedback = self.feedback.clone();
            let state = self.state.clone();
            self.runtime
                .spawn(run_link(to, rx, (tls, addresses, state), feedback));
            tx
        });
        let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        if link.try_send(msg).is_err() {
            let _ = self.feedback.send(Feedback::Unreachable(to));
            if is_snapshot {
                let _ = self.feedback.send(Feedback::SnapshotSent { to, ok: false });
            }
        }
    }

    /// Stops sending to a member that left.
    pub fn forget(&self, id: u64) {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Keeps one stream open to peer `to`, reconnecting as needed.
async fn run_link(
    to: u64,
    mut rx: mpsc::Receiver<Message>,
    (tls, addresses, state): (PeerTls, Addresses, Arc<RwLock<ClusterState>>),
    feedback: std::sync::mpsc::Sender<Feedback>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let addr = addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .cloned();
        let Some(addr) = addr else {
            // Unknown address: drain so the queue does not fill, then look again.
            while rx.try_recv().is_ok() {}
            let _ = feedback.send(Feedback::Unreachable(to));
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let channel = match tls.channel(to, &addr) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = to, %addr, error = %e, "bad peer address");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut client = pb::internal::raft_peer_client::RaftPeerClient::new(channel);
        let (tx, stream_rx) = mpsc::channel::<pb::internal::RaftMessage>(QUEUE);
        let mut request = tonic::Request::new(ReceiverStream::new(stream_rx));
        let cluster_id = state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cluster_id
            .clone();
        if let Ok(value) = cluster_id.parse() {
            request.metadata_mut().insert(CLUSTER_ID_HEADER, value);
        }
        let call = tokio::spawn(async move { client.stream(request).await });
        let mut ok = true;
        while ok {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { call.abort(); return };
                    let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
                    let bytes = match msg.write_to_bytes() {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            // Never an empty frame: drop it; Raft sends again.
                            tracing::error!(peer = to, error = %e, "a Raft message does not encode; dropped");
                            let _ = feedback.send(if is_snapshot {
                                Feedback::SnapshotSent { to, ok: false }
                            } else {
                                Feedback::Unreachable(to)
                            });
                            continue;
                        }
                    };
                    ok = tx.send(pb::internal::RaftMessage { message: bytes }).await.is_ok();
                    if ok {
                        backoff = Duration::from_millis(50);
                    }
                    if is_snapshot {
                        let _ = feedback.send(Feedback::SnapshotSent { to, ok });
                    }
                }
                _ = tx.closed() => ok = false,
            }
        }
        let _ = call.await;
        let _ = feedback.send(Feedback::Unreachable(to));
        // Drop what queued while broken; Raft will resend what matters.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
