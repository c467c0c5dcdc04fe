//! `ferry certs`: the cluster CA, issuing, revoking and renewing
//! certificates.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a new CA (ca.pem, ca-key.pem) in --dir.
    Init(CertsInitArgs),
    /// Issue a certificate signed by the CA.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Refuse a certificate everywhere in the cluster until it expires (admin).
    Revoke(CertsRevokeArgs),
    /// Replace the certificate and key of --cert/--key with new ones of the same
    /// identity: signed by the cluster (your operator certificate, while it is
    /// valid), or with --ca-dir by the CA itself (coordinator certificates, then
    /// restart that member; or an operator certificate that has expired).
    Renew(CertsRenewArgs),
}

#[derive(Debug, Args)]
pub struct CertsRenewArgs {
    /// Sign with the CA in DIR (ca.pem, ca-key.pem) instead of asking the cluster.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertsRevokeArgs {
    /// The certificate (PEM) to revoke, e.g. an operator's NAME.pem.
    #[arg(value_name = "CERT_FILE")]
    pub certificate: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory for ca.pem and ca-key.pem (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Trust domain of every identity this CA issues.
    #[arg(long, default_value = ferry_certs::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// A coordinator certificate: coordinator-<ID>.pem and coordinator-<ID>-key.pem.
    Coordinator(IssueCoordinatorArgs),
    /// An operator certificate: <NAME>.pem and <NAME>-key.pem.
    Operator(IssueOperatorArgs),
}

#[derive(Debug, Args)]
pub struct IssueCoordinatorArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The coordinator's Raft id.
    #[arg(long, value_name = "N")]
    pub id: u64,
    /// Host names or IP addresses clients reach the coordinator at (repeat or comma-separate).
    #[arg(
        long,
        value_name = "NAME_OR_IP",
        required = true,
        num_args = 1..,
        value_delimiter = ','
    )]
    pub san: Vec<String>,
    /// Directory to write the certificate and key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct IssueOperatorArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The operator's name (the identity role bindings refer to).
    #[arg(long)]
    pub name: String,
    /// Directory to write the certificate and key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}
