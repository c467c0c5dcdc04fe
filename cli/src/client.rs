//! Connecting to the cluster: parses `--coordinator` addresses, loads the
//! CA and optional client identity, connects over mTLS to the first
//! coordinator that accepts a connection, and gives every client the
//! failover transport over all of them (`crate::failover`), which moves a
//! call to another member when one goes away, for up to `--retry-for`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ferry_certs::CertifiedKey;
use tonic::transport::Endpoint;

use crate::args::GlobalArgs;
use crate::errors;
use crate::failover::{self, Failover, Member};

/// Port used when an address names none.
pub const DEFAULT_PORT: u16 = 7400;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One coordinator address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` (IPv6 hosts in brackets), as used in the URI.
    pub authority: String,
    /// The host alone, without brackets: the name the server certificate must carry.
    pub host: String,
}

/// Parses `HOST:PORT`, `[IPv6]:PORT`, or a bare host / IPv6 address (port
/// [`DEFAULT_PORT`]). An `https://` prefix is tolerated.
pub fn parse_target(addr: &str) -> Result<Target> {
    let raw = addr.trim();
    let s = raw.strip_prefix("https://").unwrap_or(raw);
    let s = s.strip_suffix('/').unwrap_or(s);
    if s.contains("://") {
        bail!("coordinator address {raw:?}: give HOST:PORT, without a scheme");
    }
    if s.is_empty() {
        bail!("empty coordinator address; give HOST:PORT, e.g. {DEFAULT_PORT_EXAMPLE}");
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| {
            anyhow!("coordinator address {raw:?}: missing `]` after the IPv6 address")
        })?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                anyhow!("coordinator address {raw:?}: expected `:PORT` after `]`")
            })?),
        };
        (host, port)
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => s
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .unwrap_or((s, None)),
            // A bare IPv6 address: it has no port (use [ADDR]:PORT for one).
            _ => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '[', ']', ' ']) {
        bail!("coordinator address {raw:?}: invalid host");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| anyhow!("coordinator address {raw:?}: invalid port {p:?}"))?,
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        authority,
        host: host.to_string(),
    })
}

const DEFAULT_PORT_EXAMPLE: &str = "127.0.0.1:7400";

/// Parses every address; empty entries (e.g. a trailing comma) are skipped.
pub fn parse_targets(addrs: &[String]) -> Result<Vec<Target>> {
    let targets = addrs
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| parse_target(a))
        .collect::<Result<Vec<_>>>()?;
    if targets.is_empty() {
        bail!(
            "no coordinator address given; pass --coordinator (or FERRY_COORDINATOR), e.g. {DEFAULT_PORT_EXAMPLE}"
        );
    }
    Ok(targets)
}

/// The client certificate: both of --cert/--key, or neither.
pub fn load_identity(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<CertifiedKey>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), None) => bail!("--cert needs --key (or FERRY_KEY) with its private key"),
        (None, Some(_)) => bail!("--key needs --cert (or FERRY_CERT) with its certificate"),
        (Some(cert), Some(key)) => {
            // A `ferry certs renew` cut short leaves the new pair staged.
            ferry_certs::finish_replace(cert, key)
                .context("cannot finish saving a renewed certificate")?;
            let cert_pem = ferry_certs::read_pem(cert).context("cannot load --cert")?;
            let key_pem = ferry_certs::read_pem(key).context("cannot load --key")?;
            if !cert_pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!("--cert {} holds no PEM certificate", cert.display());
            }
            if !key_pem.contains("PRIVATE KEY-----") {
                bail!("--key {} holds no PEM private key", key.display());
            }
            Ok(Some(CertifiedKey { cert_pem, key_pem }))
        }
    }
}

/// Reads --ca.
pub fn load_ca(ca: Option<&Path>) -> Result<String> {
    let path = ca.ok_or_else(|| anyhow!("pass --ca (or FERRY_CA) with the cluster's ca.pem"))?;
    let pem = ferry_certs::read_pem(path).context("cannot load --ca")?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "--ca {} holds no PEM certificate; pass the cluster's ca.pem",
            path.display()
        );
    }
    Ok(pem)
}

/// One client per public service (`ferry_client::Api`), all over the same
/// failover transport (every `--coordinator` address).
pub type Api = ferry_client::Api<Failover>;

/// Connects to the first coordinator of `--coordinator` that accepts a
/// connection (in the order given), and returns the clients over the
/// failover transport of every address. When none does, it tries them all
/// again after a short pause for up to `--retry-for` (a member may be
/// restarting), except those that failed over certificates, which are the
/// same every time; then it fails with each address's reason.
pub async fn connect(global: &GlobalArgs) -> Result<Api> {
    let ca_pem = load_ca(global.ca.as_deref())?;
    let identity = load_identity(global.cert.as_deref(), global.key.as_deref())?;
    let targets = parse_targets(&global.coordinator)?;
    let endpoints = targets
        .iter()
        .map(|t| endpoint(t, &ca_pem, identity.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let retry_for = Duration::from_secs(global.retry_for);
    let deadline = failover::deadline(retry_for);
    let mut failures: Vec<String> = vec![String::new(); targets.len()];
    let mut certificate = vec![false; targets.len()];
    let mut round = 0u32;
    loop {
        for (i, (target, endpoint)) in targets.iter().zip(&endpoints).enumerate() {
            if certificate[i] {
                continue;
            }
            match endpoint.connect().await {
                Ok(channel) => {
                    let members = targets
                        .iter()
                        .zip(&endpoints)
                        .enumerate()
                        .map(|(j, (t, e))| {
                            if j == i {
                                Member::connected(t.clone(), e.clone(), channel.clone())
                            } else {
                                Member::lazy(t.clone(), e.clone())
                            }
                        })
                        .collect();
                    return Ok(Api::new(Failover::new(members, i, retry_for)));
                }
                Err(e) => {
                    certificate[i] =
                        errors::is_certificate_problem(&errors::chain_text(&e).to_lowercase());
                    failures[i] = format!(
                        "{}: {}",
                        target.authority,
                        errors::describe_connect_error(&e, target)
                    );
                }
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || certificate.iter().all(|c| *c) {
            break;
        }
        tokio::time::sleep(failover::backoff(round).min(deadline - now)).await;
        round = round.saturating_add(1);
    }
    let tried = if round > 0 {
        format!("\n(tried again for {} s: --retry-for)", retry_for.as_secs())
    } else {
        String::new()
    };
    match failures.as_slice() {
        [one] => bail!("cannot connect to coordinator {one}{tried}"),
        many => bail!(
            "cannot connect to any coordinator:\n  {}{tried}",
            many.join("\n  ")
        ),
    }
}

/// What each of `global.coordinator` answers to the standard health check
/// (`grpc.health.v1.Health/Check` for the whole server): `SERVING`,
/// `NOT_SERVING`, or why it could not be asked.
pub async fn health(global: &GlobalArgs) -> Result<Vec<(String, Result<String, String>)>> {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let ca_pem = load_ca(global.ca.as_deref())?;
    let identity = load_identity(global.cert.as_deref(), global.key.as_deref())?;
    let mut answers = Vec::new();
    for target in parse_targets(&global.coordinator)? {
        let endpoint = endpoint(&target, &ca_pem, identity.as_ref())?.timeout(CONNECT_TIMEOUT);
        let answer = match endpoint.connect().await {
            Err(e) => Err(errors::describe_connect_error(&e, &target)),
            Ok(channel) => HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| {
                    ServingStatus::try_from(r.into_inner().status)
                        .map_or_else(|_| "UNKNOWN".to_string(), |s| s.as_str_name().to_string())
                })
                .map_err(|s| s.message().to_string()),
        };
        answers.push((target.authority, answer));
    }
    Ok(answers)
}

/// The endpoint for `target`; failing here is a problem with the TLS
/// material itself, the same for every address.
fn endpoint(target: &Target, ca_pem: &str, identity: Option<&CertifiedKey>) -> Result<Endpoint> {
    use ferry_certs::tls::{EndpointError, Expected};
    // The server must prove it is a coordinator, not just hold a CA-signed certificate.
    let endpoint =
        ferry_certs::tls::endpoint(&target.authority, ca_pem, identity, Expected::Coordinator)
            .map_err(|e| match e {
                EndpointError::Address(e) => anyhow!(
                    "coordinator address {}: {}",
                    target.authority,
                    errors::chain_text(&e)
                ),
                EndpointError::Tls(e) => anyhow!("{}", errors::describe_tls_settings_error(&e)),
                EndpointError::Cert(e) => anyhow!("{}", errors::describe_tls_settings_error(&e)),
            })?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: &str) -> (String, String) {
        let t = parse_target(addr).expect(addr);
        (t.authority, t.host)
    }

    #[test]
    fn hosts_and_ports() {
        let cases = [
            ("127.0.0.1:7400", "127.0.0.1:7400", "127.0.0.1"),
            (
                "coord-1.example:9000",
                "coord-1.example:9000",
                "coord-1.example",
            ),
            ("localhost", "localhost:7400", "localhost"),
            ("[::1]:7401", "[::1]:7401", "::1"),
            ("[fe80::1]", "[fe80::1]:7400", "fe80::1"),
            ("::1", "[::1]:7400", "::1"),
            (" https://10.0.0.2:7400/ ", "10.0.0.2:7400", "10.0.0.2"),
        ];
        for (input, authority, host) in cases {
            assert_eq!(
                target(input),
                (authority.to_string(), host.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "",
            "host:",
            "host:70000",
            "host:0",
            "host:port",
            "[::1",
            "[::1]7400",
            ":7400",
            "http://host:7400",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn address_lists() {
        let list = ["a:1".to_string(), " ".to_string(), "[::1]:2".to_string()];
        let hosts: Vec<_> = parse_targets(&list)
            .expect("list")
            .into_iter()
            .map(|t| t.host)
            .collect();
        assert_eq!(hosts, ["a", "::1"]);
        assert!(parse_targets(&[String::new()]).is_err());
    }

    #[test]
    fn identity_needs_both_files() {
        let err = load_identity(Some(Path::new("c.pem")), None).expect_err("no key");
        assert!(err.to_string().contains("--key"), "{err}");
        let err = load_identity(None, Some(Path::new("k.pem"))).expect_err("no cert");
        assert!(err.to_string().contains("--cert"), "{err}");
        assert!(load_identity(None, None).expect("anonymous").is_none());
    }

    #[test]
    fn missing_ca_is_explained() {
        let err = load_ca(None).expect_err("no ca");
        assert_eq!(
            err.to_string(),
            "pass --ca (or FERRY_CA) with the cluster's ca.pem"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").expect("write");
        let err = load_ca(Some(&path)).expect_err("not pem");
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }
}
