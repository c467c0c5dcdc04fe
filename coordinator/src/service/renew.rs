//! Certificate renewal over the API: a caller trades its own valid
//! certificate for a new one of the same identity, for a key it made. Agents
//! do this on their own before their certificates expire; operators with
//! `ferry certs renew`. The identity, host names and lifetime come from the
//! presented certificate and the cluster, never from the request (an agent's
//! host names minus any enrollment would refuse now: see `enroll.rs`).

use ferry_certs::{CertFacts, IdentityKind};
use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use super::enroll::MAX_CSR_BYTES;
use crate::ops::Ops;
use crate::ops::access::cert_binding;
use crate::views;

/// Signs a renewal for the caller (already authorized for `Permission::Renew`
/// with this very certificate, which is neither revoked nor unbound). An
/// agent's new certificate is bound in the replicated state before it is
/// handed out; `apply` checks again that the presented one is bound.
pub async fn renew_certificate(
    ops: &Ops,
    req: Request<pb::RenewCertificateRequest>,
) -> Result<Response<pb::RenewCertificateResponse>, Status> {
    let who = caller(&req)?;
    let leaf = req
        .peer_certs()
        .and_then(|certs| certs.first().cloned())
        .ok_or_else(|| Status::unauthenticated("renewing needs the current client certificate"))?;
    let presented = CertFacts::from_der(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
    let csr = req.into_inner().csr_pem;
    if csr.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument(
            "the certificate request is too large",
        ));
    }
    let refused = |e: ferry_certs::CertError| {
        Status::invalid_argument(format!("certificate request refused: {e}"))
    };
    let ctx = ops.ctx();
    let lifetimes = ctx.cert_lifetimes;
    let pem = match who.kind {
        IdentityKind::Operator => ctx
            .ca
            .sign_operator_csr(&csr, &who.name, lifetimes.operator)
            .map_err(refused)?,
        IdentityKind::Agent => {
            // A certificate from before agents' host names were checked
            // keeps only those still allowed (never a coordinator's, nor
            // the local machine's: an agent on loopback needs none).
            let coordinators = super::enroll::coordinator_names(ops);
            let (hosts, dropped): (Vec<String>, Vec<String>) = presented
                .hosts
                .iter()
                .cloned()
                .partition(|h| super::enroll::refused_host(h, &coordinators).is_none());
            if !dropped.is_empty() {
                tracing::warn!(agent = %who.name, ?dropped, "renewed agent certificate no longer names these hosts");
            }
            ctx.ca
                .sign_agent_csr_for(&csr, &who.name, &hosts, lifetimes.agent)
                .map_err(refused)?
        }
        IdentityKind::Coordinator => {
            return Err(Status::permission_denied(
                "a member's certificate is renewed on its host with `ferry certs renew --ca-dir`",
            ));
        }
    };
    let issued = CertFacts::from_pem(&pem)
        .map_err(|e| Status::internal(format!("reading the certificate just issued: {e}")))?;
    if who.kind == IdentityKind::Agent {
        ops.renew_agent_certificate(&who.name, cert_binding(&presented), cert_binding(&issued))
            .await?;
    }
    tracing::info!(identity = %who, expires_at = issued.not_after_ms, "certificate renewed");
    Ok(Response::new(pb::RenewCertificateResponse {
        certificate_pem: pem,
        identity: who.uri(),
        expires_at: views::timestamp(Some(issued.not_after_ms)),
    }))
}
