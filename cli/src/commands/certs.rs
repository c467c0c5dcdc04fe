//! `ferry certs`: the cluster CA and the certificates it issues (purely
//! local: no coordinator is contacted), and revocation (through the cluster).

use std::path::PathBuf;

use anyhow::{Context, Result};
use ferry_certs::CertAuthority;
use serde::Serialize;

use crate::args::{
    CertsCommand, CertsInitArgs, CertsRenewArgs, CertsRevokeArgs, Format, IssueCommand,
    IssueCoordinatorArgs, IssueOperatorArgs,
};
use crate::output;

#[derive(Serialize)]
struct Written {
    files: Vec<PathBuf>,
}

pub fn run(command: &CertsCommand, format: Format) -> Result<()> {
    let files = match command {
        CertsCommand::Init(args) => init(args)?,
        CertsCommand::Issue(IssueCommand::Coordinator(args)) => issue_coordinator(args)?,
        CertsCommand::Issue(IssueCommand::Operator(args)) => issue_operator(args)?,
        CertsCommand::Revoke(_) | CertsCommand::Renew(_) => {
            anyhow::bail!(
                "`ferry certs revoke` and `renew` are run by `certs::revoke` and `certs::renew`"
            )
        }
    };
    match format {
        Format::Json => output::print_json(&Written { files }),
        Format::Table => {
            let lines: Vec<String> = files
                .iter()
                .map(|f| format!("wrote {}", f.display()))
                .collect();
            output::print(&lines.join("\n"))
        }
    }
}

/// Creates the CA; returns the files written.
pub fn init(args: &CertsInitArgs) -> Result<Vec<PathBuf>> {
    CertAuthority::init(&args.dir, &args.trust_domain)
        .with_context(|| format!("cannot create a CA in {}", args.dir.display()))?;
    // The key coordinators seal secrets with; it travels with the CA to every member.
    let key = ferry_certs::init_secrets_key(&args.dir)
        .with_context(|| format!("cannot create the secrets key in {}", args.dir.display()))?;
    Ok(vec![
        args.dir.join(ferry_certs::CA_CERT_FILE),
        args.dir.join(ferry_certs::CA_KEY_FILE),
        key,
    ])
}

fn load_ca(dir: &std::path::Path) -> Result<CertAuthority> {
    CertAuthority::load(dir).with_context(|| format!("cannot load the CA from {}", dir.display()))
}

/// Issues `coordinator-<id>.pem` and its key into `--out`.
pub fn issue_coordinator(args: &IssueCoordinatorArgs) -> Result<Vec<PathBuf>> {
    let ca = load_ca(&args.ca_dir)?;
    let pair = ca
        .issue_coordinator(args.id, &args.san)
        .with_context(|| format!("cannot issue a certificate for coordinator {}", args.id))?;
    let (cert, key) =
        ferry_certs::write_pair(&args.out, &format!("coordinator-{}", args.id), &pair)?;
    Ok(vec![cert, key])
}

/// Issues `<name>.pem` and its key into `--out`.
pub fn issue_operator(args: &IssueOperatorArgs) -> Result<Vec<PathBuf>> {
    let ca = load_ca(&args.ca_dir)?;
    let pair = ca
        .issue_operator(&args.name)
        .with_context(|| format!("cannot issue a certificate for operator {:?}", args.name))?;
    let (cert, key) = ferry_certs::write_pair(&args.out, &args.name, &pair)?;
    Ok(vec![cert, key])
}

/// `ferry certs revoke CERT_FILE`: the cluster refuses it from now on.
pub async fn revoke(global: &crate::args::GlobalArgs, args: &CertsRevokeArgs) -> Result<()> {
    let pem = std::fs::read_to_string(&args.certificate)
        .with_context(|| format!("reading {}", args.certificate.display()))?;
    let mut api = crate::client::connect(global).await?;
    let r = api
        .access
        .revoke_certificate(ferry_proto::RevokeCertificateRequest {
            certificate_pem: pem,
        })
        .await?
        .into_inner();
    match global.output {
        Format::Json => output::print_json(&serde_json::json!({
            "identity": r.identity,
            "fingerprint": r.fingerprint,
            "expires_at": crate::wire::time(r.expires_at.as_ref()),
        })),
        Format::Table => output::print(&format!(
            "revoked {} (sha256 {}); refused until it expires at {}\n",
            r.identity,
            r.fingerprint,
            crate::wire::time(r.expires_at.as_ref())
        )),
    }
}

/// `ferry certs renew`: a new key and certificate of the same identity in
/// place of --cert and --key, signed by the cluster or (--ca-dir) the CA.
pub async fn renew(global: &crate::args::GlobalArgs, args: &CertsRenewArgs) -> Result<()> {
    let (Some(cert_path), Some(key_path)) = (global.cert.as_deref(), global.key.as_deref()) else {
        anyhow::bail!("pass --cert and --key (or FERRY_CERT and FERRY_KEY): the pair to renew");
    };
    let pair = match &args.ca_dir {
        Some(dir) => {
            let current = ferry_certs::read_pem(cert_path)?;
            load_ca(dir)?
                .renew(&current)
                .with_context(|| format!("cannot renew {}", cert_path.display()))?
        }
        None => {
            let (csr_pem, key_pem) = ferry_certs::renewal_csr().context("making a new key")?;
            let mut api = crate::client::connect(global).await?;
            let r = api
                .access
                .renew_certificate(ferry_proto::RenewCertificateRequest { csr_pem })
                .await?
                .into_inner();
            ferry_certs::CertifiedKey {
                cert_pem: r.certificate_pem,
                key_pem,
            }
        }
    };
    let facts = ferry_certs::CertFacts::from_pem(&pair.cert_pem)?;
    ferry_certs::replace_pair(cert_path, key_path, &pair)?;
    let expires_at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(facts.not_after_ms).unwrap_or(0)),
    )
    .to_string();
    match global.output {
        Format::Json => output::print_json(&serde_json::json!({
            "identity": facts.identity.uri(),
            "fingerprint": facts.fingerprint,
            "expires_at": expires_at,
            "files": [cert_path, key_path],
        })),
        Format::Table => output::print(&format!(
            "renewed {}: wrote {} and {}; it expires at {expires_at}\n",
            facts.identity,
            cert_path.display(),
            key_path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_and_issue_write_the_expected_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca_dir = tmp.path().join("ca");
        let out = tmp.path().join("out");
        let files = init(&CertsInitArgs {
            dir: ca_dir.clone(),
            trust_domain: "ferry".into(),
        })
        .expect("init");
        assert_eq!(
            files,
            [
                ca_dir.join("ca.pem"),
                ca_dir.join("ca-key.pem"),
                ca_dir.join("secrets.key")
            ]
        );

        let files = issue_coordinator(&IssueCoordinatorArgs {
            ca_dir: ca_dir.clone(),
            id: 3,
            san: vec!["127.0.0.1".into(), "localhost".into()],
            out: out.clone(),
        })
        .expect("coordinator");
        assert_eq!(
            files,
            [
                out.join("coordinator-3.pem"),
                out.join("coordinator-3-key.pem")
            ]
        );

        let files = issue_operator(&IssueOperatorArgs {
            ca_dir: ca_dir.clone(),
            name: "alice".into(),
            out: out.clone(),
        })
        .expect("operator");
        assert_eq!(files, [out.join("alice.pem"), out.join("alice-key.pem")]);

        let err = issue_operator(&IssueOperatorArgs {
            ca_dir,
            name: "alice".into(),
            out,
        })
        .expect_err("no overwrite");
        assert!(
            format!("{err:#}").contains("refusing to overwrite"),
            "{err:#}"
        );
    }
}
