//! Agent enrollment: a join token, a CSR, the public half of the agent's
//! wrapping key and the labels it asks for in, a certificate signed by the
//! cluster CA out. The wrapping key is required and recorded with the agent,
//! and secrets are sealed to it at dispatch: the cluster's secrets key never
//! leaves the coordinators. The labels are checked against the token and
//! bound to the agent (only an admin changes them afterwards). The
//! certificate's one host name is never a coordinator's name or address, nor
//! `localhost` or loopback. The token use is committed through Raft before
//! the certificate is returned, so a token can never admit more agents than
//! it allows.
//!
//! `GetClusterCa` hands out the CA certificate (public anyway: every server
//! presents certificates it signed) for `ferry-agent install`, which pins
//! its hash; it shares Enroll's rate limit.
//!
//! Enroll is the one call anyone may make without a client certificate, so it
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
        if req.wrapping_public_key.is_empty() {
            return Err(Status::failed_precondition(
                "this agent sent no wrapping key: it is older than per-agent wrapping keys, and \
                 the cluster no longer hands its secrets key to agents; upgrade ferry-agent and \
                 enroll again",
            ));
        }
        let wrapping_key = ferry_certs::validate_public(&req.wrapping_public_key)
            .map(hex::encode)
            .map_err(|e| Status::invalid_argument(format!("wrapping key: {e}")))?;
        ferry_state::check_labels(&req.labels)
            .map_err(|e| Status::invalid_argument(format!("agent labels: {e}")))?;
        if req.sans.len() > 1 {
            return Err(Status::invalid_argument(
                "an agent certificate names one host only: its artifact server's (--advertise)",
            ));
        }
        let coordinators = coordinator_names(&self.ops);
        for san in &req.sans {
            if let Some(reason) = refused_host(san, &coordinators) {
                return Err(Status::invalid_argument(format!(
                    "host name {}: {reason}",
                    ferry_certs::clip(san)
                )));
            }
        }
        let token_hash = hash_token(&req.token);
        // A token created a moment ago may not have reached this member yet:
        // only a refusal on fresh state is final.
        self.ops
            .may_enroll(&token_hash, &req.name, &req.labels)
            .await?;
        let ctx = self.ops.ctx();
        // Sign first (this validates the CSR), commit the token use second:
        // a bad CSR must not burn a token use.
        let cert = ctx
            .ca
            .sign_agent_csr_for(&req.csr_pem, &req.name, &req.sans, ctx.cert_lifetimes.agent)
            .map_err(|e| Status::invalid_argument(format!("certificate request refused: {e}")))?;
        let facts = ferry_certs::CertFacts::from_pem(&cert)
            .map_err(|e| Status::internal(format!("reading the certificate just issued: {e}")))?;
        let labels = self
            .ops
            .enroll(Enrollment {
                token_hash,
                agent: req.name.clone(),
                cert: crate::ops::access::cert_binding(&facts),
                wrapping_key,
                labels: req.labels,
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
            labels,
        }))
    }

    /// The CA certificate, public: `ferry-agent install` checks it against
    /// the fingerprint it was given before trusting it. Shares Enroll's
    /// per-address limit.
    async fn get_cluster_ca(
        &self,
        req: Request<pb::GetClusterCaRequest>,
    ) -> Result<Response<pb::GetClusterCaResponse>, Status> {
        self.admit(req.remote_addr().map(|a| a.ip()))?;
        Ok(Response::new(pb::GetClusterCaResponse {
            ca_pem: self.ops.ctx().ca.ca_pem().to_string(),
        }))
    }
}

/// The names and addresses coordinators are reached at, which no agent
/// certificate may carry: the host of every member's address in the state,
/// this member's certificate's host names, and its console's.
pub(crate) fn coordinator_names(ops: &Ops) -> Vec<String> {
    {
        let ctx = ops.ctx();
        let mut names = ops.local_member_hosts();
        match ferry_certs::CertFacts::from_pem(&ctx.identity.current().cert_pem) {
            Ok(facts) => names.extend(facts.hosts),
            Err(e) => tracing::warn!(error = %e, "cannot read this member's certificate"),
        }
        if let Some(url) = &ctx.console_url {
            let authority = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or_default();
            names.push(ferry_certs::tls::host_of(authority).to_string());
        }
        names
    }
}

/// Why an agent certificate may not name `host`, if it may not: the local
/// machine (`ferry_certs::agent_host_refusal`) or one of `coordinators`
/// (compared as addresses when both parse as IPs, else case-insensitively
/// without a trailing dot).
pub(crate) fn refused_host(host: &str, coordinators: &[String]) -> Option<String> {
    if let Some(reason) = ferry_certs::agent_host_refusal(host) {
        return Some(format!(
            "{reason}; an agent certificate must not name the local machine (an agent \
             advertised on loopback asks for no host name)"
        ));
    }
    let key = |h: &str| {
        let h = h.trim_matches(['[', ']']);
        match h.parse::<IpAddr>() {
            Ok(ip) => ip.to_canonical().to_string(),
            Err(_) => h.trim_end_matches('.').to_ascii_lowercase(),
        }
    };
    let wanted = key(host);
    coordinators
        .iter()
        .any(|c| !c.is_empty() && key(c) == wanted)
        .then(|| {
            "it is a coordinator's name or address; an agent certificate must not name a \
             coordinator (advertise the agent's own host)"
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::refused_host;

    #[test]
    fn agent_certificates_name_no_coordinator_and_not_the_local_machine() {
        let coordinators = [
            "10.0.0.1".to_string(),
            "ferry-1.example".to_string(),
            "fd00::1".to_string(),
        ];
        for host in [
            "10.0.0.1",
            "FERRY-1.example.",
            "[fd00::1]",
            "fd00:0:0:0:0:0:0:1",
            "::ffff:10.0.0.1",
            "localhost",
            "127.0.0.1",
            "::1",
            "0.0.0.0",
        ] {
            assert!(refused_host(host, &coordinators).is_some(), "{host}");
        }
        for host in ["10.0.0.2", "build-1.example", "ferry-1.example.org"] {
            assert_eq!(refused_host(host, &coordinators), None, "{host}");
        }
    }
}
