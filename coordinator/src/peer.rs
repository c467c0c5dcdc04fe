//! Fetching blobs (final logs) from the agents that hold them, over mTLS with
//! the coordinator's own certificate. Bytes are streamed, never stored here.

use ferry_certs::CertifiedKey;
use ferry_proto as pb;

/// Opens a fetch stream for `digest` from the first reachable holder.
pub async fn fetch(
    ca_pem: &str,
    identity: &CertifiedKey,
    holders: &[String],
    digest: &str,
) -> Result<tonic::Streaming<pb::Chunk>, String> {
    let mut errors = Vec::new();
    for addr in holders {
        let endpoint = match ferry_certs::tls::endpoint(
            addr,
            ca_pem,
            Some(identity),
            ferry_certs::tls::Expected::Agent,
        ) {
            Ok(e) => e.connect_timeout(std::time::Duration::from_secs(5)),
            Err(e) => {
                errors.push(format!("{addr}: {e}"));
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(ch) => {
                let mut client = pb::artifact_peer_client::ArtifactPeerClient::new(ch);
                match client
                    .fetch(pb::FetchRequest {
                        digest: digest.to_string(),
                        offset: 0,
                    })
                    .await
                {
                    Ok(stream) => return Ok(stream.into_inner()),
                    Err(e) => errors.push(format!("{addr}: {}", e.message())),
                }
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(if errors.is_empty() {
        "no agent holds it".into()
    } else {
        errors.join("; ")
    })
}
