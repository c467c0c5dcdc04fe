//! Agent enrollment: a join token and a CSR in, a certificate signed by the
//! cluster CA (and the cluster's secrets key, to open sealed secrets) out. The token use is committed through Raft before the
//! certificate is returned, so a token can never admit more agents than it allows.

use ferry_proto as pb;
use sha2::Digest;
use tonic::{Request, Response, Status};

use super::SharedCtx;
use crate::state::Command;
use crate::views::now_ms;

pub struct EnrollmentService(pub SharedCtx);

pub fn hash_token(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

#[tonic::async_trait]
impl pb::enrollment_server::Enrollment for EnrollmentService {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let req = req.into_inner();
        ferry_certs::validate_name(&req.name)
            .map_err(|e| Status::invalid_argument(format!("agent name `{}`: {e}", req.name)))?;
        // Sign first (this validates the CSR), commit the token use second:
        // a bad CSR must not burn a token use.
        let cert = self
            .0
            .ca
            .sign_agent_csr(&req.csr_pem, &req.name, &req.sans)
            .map_err(|e| Status::invalid_argument(format!("certificate request refused: {e}")))?;
        self.0
            .raft
            .propose(Command::Enroll {
                token_hash: hash_token(&req.token),
                agent: req.name.clone(),
                at: now_ms(),
            })
            .await?;
        tracing::info!(agent = %req.name, "agent enrolled");
        let identity = ferry_certs::Identity::new(
            self.0.ca.trust_domain(),
            ferry_certs::IdentityKind::Agent,
            &req.name,
        )
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::EnrollResponse {
            certificate_pem: cert,
            ca_pem: self.0.ca.ca_pem().to_string(),
            identity: identity.uri(),
            secrets_key: self
                .0
                .secrets
                .as_ref()
                .map(|b| b.key_bytes().to_vec())
                .unwrap_or_default(),
        }))
    }
}
