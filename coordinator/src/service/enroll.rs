//! Agent enrollment: a join token, a CSR and the public half of the agent's
//! wrapping key in, a certificate signed by the cluster CA out. The wrapping
//! key is recorded with the agent, and secrets are sealed to it at dispatch;
//! the cluster's secrets key goes only to an older agent that sent no wrapping
//! key. The token use is committed through Raft before the certificate is
//! returned, so a token can never admit more agents than it allows.
//!
//! This is the one call anyone may make without a client certificate, so it
//! must cost the cluster nothing durable until the token checks out: calls are
//! rate-limited per source address, and the token and name are checked against
//! the applied state (after a read barrier if they look wrong) before anything
//! is proposed. Only a plausible enrollment becomes a Raft entry, where `apply`
//! checks the token again.

use std::net::IpAddr;
use std::num::NonZeroU32;

use ferry_proto as pb;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::{Request, Response, Status};

use crate::ops::Ops;
use crate::ops::access::{Enrollment, hash_token};

pub struct EnrollmentService {
    ops: Ops,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// Largest CSR accepted (a real one is well under 1 KiB).
pub(crate) const MAX_CSR_BYTES: usize = 16 * 1024;
/// Longest join token accepted (`ferry token create` makes ~50 characters).
const MAX_TOKEN_BYTES: usize = 256;

impl EnrollmentService {
    /// Enrollment answering at most `per_minute` calls per source address
    /// (with bursts of as many).
    pub fn new(ops: Ops, per_minute: NonZeroU32) -> Self {
        EnrollmentService {
            ops,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    fn admit(&self, source: Option<IpAddr>) -> Result<(), Status> {
        // Keeps the limiter's memory bounded by recently active sources.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        let Some(ip) = source else { return Ok(()) };
        self.limiter.check_key(&ip).map_err(|_| {
            Status::resource_exhausted(format!(
                "too many enrollment calls from {ip}; wait a minute and try again"
            ))
        })
    }
}

#[tonic::async_trait]
impl pb::enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.admit(req.remote_addr().map(|a| a.ip()))?;
        let req = req.into_inner();
        if req.csr_pem.len() > MAX_CSR_BYTES || req.token.len() > MAX_TOKEN_BYTES {
            return Err(Status::invalid_argument(
                "the certificate request or join token is too large",
            ));
        }
        ferry_certs::validate_agent_name(&req.name)
            .map_err(|e| Status::invalid_argument(format!("agent name: {e}")))?;
        let wrapping_key = if req.wrapping_public_key.is_empty() {
            None
        } else {
            let key = ferry_certs::validate_public(&req.wrapping_public_key)
                .map_err(|e| Status::invalid_argument(format!("wrapping key: {e}")))?;
            Some(hex::encode(key))
        };
        let token_hash = hash_token(&req.token);
        // A token created a moment ago may not have reached this member yet:
        // only a refusal on fresh state is final.
        self.ops.may_enroll(&token_hash, &req.name).await?;
        let ctx = self.ops.ctx();
        // Sign first (this validates the CSR), commit the token use second:
        // a bad CSR must not burn a token use.
        let cert = ctx
            .ca
            .sign_agent_csr_for(&req.csr_pem, &req.name, &req.sans, ctx.cert_lifetimes.agent)
            .map_err(|e| Status::invalid_argument(format!("certificate request refused: {e}")))?;
        let facts = ferry_certs::CertFacts::from_pem(&cert)
            .map_err(|e| Status::internal(format!("reading the certificate just issued: {e}")))?;
        self.ops
            .enroll(Enrollment {
                token_hash,
                agent: req.name.clone(),
                cert: crate::state::CertBinding::from(&facts),
                wrapping_key: wrapping_key.clone(),
            })
            .await?;
        let identity = ferry_certs::Identity::new(
            ctx.ca.trust_domain(),
            ferry_certs::IdentityKind::Agent,
            &req.name,
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::EnrollResponse {
            certificate_pem: cert,
            ca_pem: ctx.ca.ca_pem().to_string(),
            identity: identity.uri(),
            // An agent with a wrapping key never gets the cluster's key.
            secrets_key: match (&wrapping_key, &ctx.secrets) {
                (None, Some(b)) => b.key_bytes().to_vec(),
                _ => Vec::new(),
            },
        }))
    }
}
