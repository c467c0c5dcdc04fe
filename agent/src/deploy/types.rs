//! What a deployment is given and what it reports, as plain types: the
//! deployer never sees protocol messages (`crate::wire` converts them).

/// Where and how a deploy action rolls out its artifact: the environment's
/// hosts, batch size and `min_healthy` already resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySpec {
    pub environment: String,
    pub hosts: Vec<DeployHost>,
    /// Hosts changed at once.
    pub batch_size: u32,
    /// Hosts that must end on the new release.
    pub min_healthy: u32,
    pub rollback: bool,
    pub keep_releases: u32,
    pub hook_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Directory under releases/: the execution whose artifact this is.
    pub release: String,
    pub strategy: String,
    /// Why the deployment cannot start (unknown environment, missing key):
    /// the action fails with it.
    pub problem: Option<String>,
    /// The release cannot be on any host yet: inspect and upload may share
    /// one SSH session.
    pub fresh_release: bool,
}

impl DeploySpec {
    /// The hosts' opened credentials (SSH private keys, Docker TLS
    /// bundles): masked in logs and reports like the action's secrets,
    /// should a hook or an error print one.
    pub fn credentials(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.hosts
            .iter()
            .flat_map(|h| [h.private_key.clone(), h.tls_bundle.clone()])
            .filter(|c| !c.is_empty())
    }
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKind {
    #[default]
    Ssh,
    /// A Docker Engine's API.
    Docker,
}

/// One host of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployHost {
    pub name: String,
    pub kind: HostKind,
    pub host: String,
    pub port: u32,
    pub user: String,
    /// OpenSSH public key line, or a SHA256:... fingerprint.
    pub host_key: String,
    /// SSH: the private key from the host's key secret, opened.
    pub private_key: Vec<u8>,
    pub path: String,
    /// Docker: the engine endpoint and the PEM bundle from its TLS secret, opened.
    pub endpoint: String,
    pub tls_bundle: Vec<u8>,
}

/// What a deployment did, host by host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentReport {
    pub environment: String,
    pub release: String,
    pub artifact_digest: String,
    /// Succeeded, Failed or RolledBack.
    pub outcome: String,
    /// One line: which host failed at which hook, and what happened after.
    pub summary: String,
    pub strategy: String,
    pub hosts: Vec<HostReport>,
}

/// What happened on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    /// Deployed, Failed, RolledBack, RollbackFailed or Skipped.
    pub outcome: String,
    /// The release the host is on at the end ("" if none).
    pub release: String,
    /// The release it was on before.
    pub previous: String,
    pub batch: u32,
    pub error: String,
    pub hooks: Vec<HookReport>,
}

/// One step on a host: a lifecycle hook, or one of Ferry's own (connect,
/// upload, switch, prune).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookReport {
    pub hook: String,
    /// deploy or rollback.
    pub phase: String,
    pub success: bool,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// The end of the step's output (secrets masked).
    pub output: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_credential_is_masked() {
        let spec = DeploySpec {
            hosts: vec![
                DeployHost {
                    private_key: b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkey\n".to_vec(),
                    ..Default::default()
                },
                DeployHost {
                    tls_bundle: b"bundle-bytes".to_vec(),
                    ..Default::default()
                },
                DeployHost::default(),
            ],
            ..Default::default()
        };
        let masker = crate::mask::Masker::new(spec.credentials());
        let out = masker.mask(b"key line AAAAkey and bundle-bytes\n");
        assert_eq!(String::from_utf8_lossy(&out), "key line *** and ***\n");
        assert_eq!(spec.credentials().count(), 2);
    }
}
