//! Access: who a command acts for, join tokens, enrollment, role bindings,
//! certificate revocation and renewal, `whoami`, and the cluster's
//! bootstrap (trust domain, founding members, first admin).

use std::collections::BTreeMap;

use ferry_certs::{CertFacts, Identity, IdentityKind};
use sha2::Digest;

use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{By, CertBinding, Command, Role};

/// Longest join token lifetime: enrollment secrets should not live long.
const MAX_TOKEN_TTL_SECONDS: u64 = 30 * 86_400;
/// Most agents one join token admits.
const MAX_TOKEN_USES: u32 = 10_000;

/// Who a command proposed for `who` acts for, as `apply` checks it again:
/// a member (which `authz` lets call operator APIs) or an operator.
pub fn acting(who: &Identity) -> By {
    match who.kind {
        IdentityKind::Coordinator => By::member(&who.name),
        _ => By::operator(&who.name),
    }
}

/// How a join token is stored: hex SHA-256 of its trimmed text.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

/// What the state binds of a certificate: its fingerprint and expiry.
pub fn cert_binding(facts: &CertFacts) -> CertBinding {
    CertBinding {
        fingerprint: facts.fingerprint.clone(),
        not_after: facts.not_after_ms,
    }
}

/// A join token just created (its text is shown once, never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub token: String,
    pub expires_at: i64,
    /// The labels it grants (sorted, each once).
    pub labels: Vec<String>,
}

/// An agent's enrollment, checked and about to be committed.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub token_hash: String,
    pub agent: String,
    pub cert: CertBinding,
    /// Hex of its X25519 wrapping public key (required).
    pub wrapping_key: String,
    /// The labels it asked for.
    pub labels: Vec<String>,
}

impl Ops {
    /// Write: a join token admitting `uses` agents (0: one) for `ttl_seconds`
    /// (0: an hour), granting `labels` (none: each agent's ask is recorded).
    pub async fn create_token(
        &self,
        who: &Identity,
        ttl_seconds: u64,
        uses: u32,
        labels: Vec<String>,
    ) -> OpResult<NewToken> {
        ferry_state::check_labels(&labels)
            .map_err(|e| OpError::Invalid(format!("--labels: {e}")))?;
        let labels: Vec<String> = labels
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let ttl = match ttl_seconds {
            0 => 3600,
            t if t > MAX_TOKEN_TTL_SECONDS => {
                return Err(OpError::Invalid(format!(
                    "a join token lives at most {} days; ask for a shorter --ttl",
                    MAX_TOKEN_TTL_SECONDS / 86_400
                )));
            }
            t => t,
        };
        let uses = match uses {
            0 => 1,
            u if u > MAX_TOKEN_USES => {
                return Err(OpError::Invalid(format!(
                    "a join token admits at most {MAX_TOKEN_USES} agents; ask for fewer --uses"
                )));
            }
            u => u,
        };
        let secret: [u8; 24] = rand::random();
        let token = format!("ferry-join-{}", hex::encode(secret));
        let now = now_ms();
        // `ttl` is bounded above, so this neither wraps nor passes year 9999.
        let expires_at =
            now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX).saturating_mul(1000));
        self.write(Command::CreateToken {
            hash: hash_token(&token),
            expires_at,
            uses,
            by: acting(who),
            at: now,
            labels: labels.clone(),
        })
        .await?;
        Ok(NewToken {
            token,
            expires_at,
            labels,
        })
    }

    /// Local read, then linearizable if refused: whether `token_hash` may
    /// enroll `name` asking for `labels`, and the labels it would be bound
    /// to. A token created a moment ago may not have reached this member
    /// yet, so only a refusal on fresh state is final; a good token costs no
    /// read index (enrollment is the unauthenticated call).
    pub async fn may_enroll(
        &self,
        token_hash: &str,
        name: &str,
        labels: &[String],
    ) -> OpResult<Vec<String>> {
        let check =
            |s: &ferry_state::ClusterState| s.may_enroll(token_hash, name, labels, now_ms());
        if let Ok(bound) = self.local_read(check) {
            return Ok(bound);
        }
        Ok(self.read(check).await??)
    }

    /// Local read (enrollment): the host part of every member's address in
    /// the state, which no agent certificate may name.
    pub fn local_member_hosts(&self) -> Vec<String> {
        self.local_read(|s| {
            s.members
                .values()
                .map(|a| ferry_certs::tls::host_of(a).to_string())
                .collect()
        })
    }

    /// Write: commits an enrollment (the token use); `apply` checks the
    /// token (and the labels it grants) again. Returns the labels the agent
    /// is bound to.
    pub async fn enroll(&self, e: Enrollment) -> OpResult<Vec<String>> {
        self.write(Command::Enroll {
            token_hash: e.token_hash,
            agent: e.agent.clone(),
            cert: Some(e.cert),
            wrapping_key: Some(e.wrapping_key),
            at: now_ms(),
            labels: e.labels,
        })
        .await?;
        let labels = self.local_read(|s| {
            s.agents
                .get(&e.agent)
                .map(|a| a.labels.clone())
                .unwrap_or_default()
        });
        tracing::info!(agent = %e.agent, ?labels, "agent enrolled");
        Ok(labels)
    }

    /// Write: binds an agent's renewed certificate (`apply` checks that the
    /// presented one is bound).
    pub async fn renew_agent_certificate(
        &self,
        agent: &str,
        presented: CertBinding,
        cert: CertBinding,
    ) -> OpResult<()> {
        self.write(Command::RenewAgentCertificate {
            agent: agent.to_string(),
            presented,
            cert,
            at: now_ms(),
        })
        .await
        .map(drop)
    }

    /// Write: grants `role` to `subject`; returns every binding after.
    pub async fn grant_role(
        &self,
        who: &Identity,
        subject: &str,
        role: Role,
    ) -> OpResult<Vec<(String, Role)>> {
        let subject = checked_subject(subject)?;
        self.write(Command::Grant {
            subject,
            role,
            by: acting(who),
        })
        .await?;
        Ok(self.local_read(|s| s.roles.iter().cloned().collect()))
    }

    /// Write: revokes `role` from `subject`; returns every binding after.
    pub async fn revoke_role(
        &self,
        who: &Identity,
        subject: &str,
        role: Role,
    ) -> OpResult<Vec<(String, Role)>> {
        let subject = checked_subject(subject)?;
        self.write(Command::Revoke {
            subject,
            role,
            by: acting(who),
        })
        .await?;
        Ok(self.local_read(|s| s.roles.iter().cloned().collect()))
    }

    /// Linearizable: one page of the role bindings by subject, and the next
    /// page's token.
    pub async fn list_role_bindings(
        &self,
        page: &super::page::PageRequest,
    ) -> OpResult<(Vec<(String, Role)>, String)> {
        self.read(|s| {
            // A subject may hold several roles: the key is both.
            page.apply(s.roles.iter().cloned(), |(who, role)| {
                format!("{who}\u{0}{role:?}")
            })
        })
        .await?
    }

    /// Write: revokes a certificate of this cluster (given as PEM) until it
    /// expires.
    pub async fn revoke_certificate(&self, who: &Identity, pem: &str) -> OpResult<CertFacts> {
        if pem.len() > 64 * 1024 {
            return Err(OpError::Invalid(
                "that is not a certificate (too large)".into(),
            ));
        }
        let facts = CertFacts::from_pem(pem)
            .map_err(|e| OpError::Invalid(format!("cannot revoke: {e}")))?;
        let domain = self.ctx().ca.trust_domain();
        if facts.identity.trust_domain != domain {
            return Err(OpError::Invalid(format!(
                "{} is not of this cluster's trust domain `{domain}`",
                facts.identity
            )));
        }
        let now = now_ms();
        if facts.not_after_ms <= now {
            return Err(OpError::FailedPrecondition(format!(
                "the certificate of {} has already expired; it is refused anyway",
                facts.identity
            )));
        }
        self.write(Command::RevokeCertificate {
            fingerprint: facts.fingerprint.clone(),
            identity: facts.identity.uri(),
            not_after: facts.not_after_ms,
            by: acting(who),
            at: now,
        })
        .await?;
        tracing::info!(identity = %facts.identity, fingerprint = %facts.fingerprint, by = %who.name, "certificate revoked");
        Ok(facts)
    }

    /// Local read: the roles bound to `who` as this member sees them, the
    /// same state its `authz` layer checks calls against (so `ferry whoami`
    /// on a lagging member shows what that member lets through).
    pub fn who_am_i(&self, who: &Identity) -> Vec<Role> {
        self.local_read(|s| s.roles_of(&who.name))
    }

    /// Whether this member has applied the cluster's bootstrap (local read:
    /// it only ever turns true).
    pub fn bootstrapped(&self) -> bool {
        self.local_read(|s| s.bootstrapped)
    }

    /// Leader, once: records the trust domain, the founding members and the
    /// first admin unless the cluster is bootstrapped (local read: applying
    /// it twice is a no-op). Returns false if it was bootstrapped before.
    pub async fn bootstrap(
        &self,
        admin: Option<String>,
        members: BTreeMap<u64, String>,
    ) -> OpResult<bool> {
        if self.local_read(|s| s.bootstrapped) {
            if let Some(a) = &admin
                && self.local_read(|s| !s.roles.contains(&(a.clone(), Role::Admin)))
            {
                tracing::warn!(admin = %a, "--bootstrap-admin ignored: the cluster was bootstrapped before");
            }
            return Ok(false);
        }
        self.write(Command::Bootstrap {
            trust_domain: self.ctx().ca.trust_domain().to_string(),
            admin,
            members,
            at: now_ms(),
            cluster_id: super::new_cluster_id(),
        })
        .await?;
        Ok(true)
    }
}

/// The subject of a role binding: an operator's name.
fn checked_subject(subject: &str) -> OpResult<String> {
    ferry_certs::validate_name(subject)
        .map_err(|e| OpError::Invalid(format!("subject `{subject}`: {e}")))?;
    Ok(subject.to_string())
}
