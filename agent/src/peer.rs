//! Peer-to-peer artifacts: the ArtifactPeer server every agent runs (mTLS;
//! only agents and coordinators of this cluster may fetch), and the client
//! that pulls a blob from whichever holder answers, verifying its sha256.

use std::io::{Read, Seek, SeekFrom, Write};
use std::pin::Pin;

use ferry_certs::{CertifiedKey, Identity, IdentityKind};
use ferry_proto as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use ferry_engine::store::{Blob, Store, check_digest};

/// Chunks waiting for the writer thread (at most this many in memory).
const WRITE_QUEUE: usize = 16;

const CHUNK: usize = 256 * 1024;
/// HTTP/2 flow-control windows for bulk transfers (the 64 KiB default stalls them).
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// Largest HTTP/2 frame (the 16 KiB default means 64 Ki frames per GiB).
pub const MAX_FRAME: u32 = 1024 * 1024 - 1;

pub struct PeerService {
    pub store: Store,
    /// The build cache store, whose entries peers fetch too; None when
    /// this agent keeps no caches.
    pub caches: Option<Store>,
    pub trust_domain: String,
    /// Certificates the cluster revoked (fingerprints), as the coordinator last said.
    pub revoked: Revoked,
}

/// Fingerprints of revoked certificates, replaced whole by each `Revocations`
/// message of the session.
pub type Revoked = std::sync::Arc<std::sync::RwLock<std::collections::HashSet<String>>>;

/// The one authorization check of the peer server: an agent or coordinator
/// certificate of this trust domain that the cluster has not revoked.
fn authorize<T>(
    req: &Request<T>,
    trust_domain: &str,
    revoked: &Revoked,
) -> Result<Identity, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("client certificate required"))?;
    let id = Identity::from_cert_der(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    let fingerprint = ferry_certs::fingerprint(leaf.as_ref());
    if revoked
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&fingerprint)
    {
        return Err(Status::unauthenticated(format!(
            "the certificate of {id} was revoked"
        )));
    }
    if id.trust_domain != trust_domain
        || !matches!(id.kind, IdentityKind::Agent | IdentityKind::Coordinator)
    {
        return Err(Status::permission_denied(format!(
            "{id} may not fetch artifacts"
        )));
    }
    Ok(id)
}

#[tonic::async_trait]
impl pb::internal::artifact_peer_server::ArtifactPeer for PeerService {
    type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

    async fn fetch(
        &self,
        req: Request<pb::internal::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let who = authorize(&req, &self.trust_domain, &self.revoked)?;
        let req = req.into_inner();
        check_digest(&req.digest).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut file = self
            .store
            .open_blob(&req.digest)
            .or_else(|e| match &self.caches {
                Some(caches) => caches.open_blob(&req.digest),
                None => Err(e),
            })
            .map_err(|_| Status::not_found(format!("{} is not held here", req.digest)))?;
        tracing::debug!(peer = %who, digest = %req.digest, "serving blob");
        file.seek(SeekFrom::Start(req.offset))
            .map_err(|e| Status::internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(pb::Chunk {
                                data: buf[..n].to_vec().into(),
                            }))
                            .is_err()
                        {
                            return;
                        }
                        crate::metrics::bytes_served(n);
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Rounds over the holders, each after this pause: about 7 s in all, which a
/// restarting agent's peer server is back within.
const FETCH_ROUNDS: [std::time::Duration; 3] = [
    std::time::Duration::ZERO,
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(5),
];

/// Pulls `digest` into the store from the first holder that delivers it intact.
pub async fn fetch(
    store: &Store,
    ca_pem: &str,
    identity: &CertifiedKey,
    holders: &[String],
    digest: &str,
) -> Result<Blob, String> {
    if let Some(path) = store.path(digest) {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        return Ok(Blob {
            digest: digest.into(),
            size,
        });
    }
    // One writer across holders: a transfer cut short resumes at the byte it
    // reached from the next holder (or the same one, in the next round).
    // Content that does not match the digest is thrown away and fetched
    // afresh elsewhere. A holder that is restarting (an upgrade) comes back
    // at the address it advertises: the rounds wait for it a little.
    let mut errors = Vec::new();
    let mut w = store.writer().map_err(|e| e.to_string())?;
    for (round, pause) in FETCH_ROUNDS.iter().enumerate() {
        if round > 0 {
            tokio::time::sleep(*pause).await;
            // The message names what the last round met.
            errors.clear();
        }
        for addr in holders {
            let (back, result) = fetch_from(w, ca_pem, identity, addr, digest).await;
            w = back;
            match result {
                Ok(()) => match w.commit(Some(digest)) {
                    Ok(b) => return Ok(b),
                    Err(e) => {
                        errors.push(format!("{addr}: {e}"));
                        w = store.writer().map_err(|e| e.to_string())?;
                    }
                },
                Err(e) => {
                    errors.push(format!("{addr} (after {} bytes): {e}", w.len()));
                }
            }
        }
    }
    Err(if errors.is_empty() {
        format!("no agent holds {digest}")
    } else {
        format!("could not fetch {digest}: {}", errors.join("; "))
    })
}

/// Appends `digest` from `addr` to `w`, starting at the bytes `w` already
/// has; hands `w` back with whatever arrived. Hashing and writing run on a
/// blocking thread of their own, so they overlap with receiving (and TLS
/// decryption) instead of taking turns with it.
async fn fetch_from(
    w: ferry_engine::store::BlobWriter,
    ca_pem: &str,
    identity: &CertifiedKey,
    addr: &str,
    digest: &str,
) -> (ferry_engine::store::BlobWriter, Result<(), String>) {
    let offset = w.len();
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = w;
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = w.write_all(&chunk) {
                return (w, Err(e.to_string()));
            }
        }
        (w, Ok(()))
    });
    let received = receive(tx, ca_pem, identity, addr, digest, offset).await;
    // The writer thread only ends by returning: a panic there is a bug, passed on.
    let (w, written) = writer
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    (w, written.and(received))
}

/// Streams the blob from `addr` into `tx`, from byte `offset`.
async fn receive(
    tx: mpsc::Sender<bytes::Bytes>,
    ca_pem: &str,
    identity: &CertifiedKey,
    addr: &str,
    digest: &str,
    offset: u64,
) -> Result<(), String> {
    let channel = ferry_certs::tls::endpoint(
        addr,
        ca_pem,
        Some(identity),
        ferry_certs::tls::Expected::Agent,
    )
    .map_err(|e| e.to_string())?
    .connect_timeout(std::time::Duration::from_secs(5))
    .initial_stream_window_size(STREAM_WINDOW)
    .initial_connection_window_size(CONNECTION_WINDOW)
    .max_frame_size(MAX_FRAME)
    .connect()
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let mut client = pb::internal::artifact_peer_client::ArtifactPeerClient::new(channel);
    let mut stream = client
        .fetch(pb::internal::FetchRequest {
            digest: digest.into(),
            offset,
        })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|e| e.message().to_string())?
    {
        crate::metrics::bytes_fetched(chunk.data.len());
        if tx.send(chunk.data).await.is_err() {
            // The writer stopped (a disk error); it reports why.
            break;
        }
    }
    Ok(())
}
