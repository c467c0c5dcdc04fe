//! `ferry-agent install`: sets up a build machine with one command, the one
//! `ferry token create` prints.
//!
//! 1. Fetches the cluster's CA certificate from a coordinator
//!    (`Enrollment/GetClusterCa`) over a TLS connection that cannot verify
//!    the server yet, and keeps it only if the sha256 of its DER is the
//!    `--ca-sha256` it was given: nothing is trusted on first use, and a
//!    mismatch stops everything before a byte is written. It then connects
//!    again, verifying as every client does that the server's certificate
//!    chains to that CA and names a coordinator, and asks again.
//! 2. Writes the CA to `<etc>/ca.pem`, enrolls with the join token (the
//!    agent's own enrollment, `identity::load_or_enroll`) into the state dir,
//!    writes `<etc>/agent.env` (mode 0600, without the token: the agent is
//!    enrolled), gives the state dir to the `ferry-agent` user when there is
//!    one, and runs `systemctl enable --now ferry-agent` when systemd runs.
//!
//! Each step says what it did, one line each. Run again with the same
//! arguments it changes nothing and says so; `--dry-run` says what it would
//! do and changes nothing (it still fetches and checks the CA).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_proto as pb;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The systemd unit the agent package installs.
const UNIT: &str = "ferry-agent";
/// The system user the agent package makes.
const USER: &str = "ferry-agent";
/// The state dir the unit passes (`--state-dir`), left out of agent.env.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferry-agent";
const TIMEOUT: Duration = Duration::from_secs(10);

/// `ferry-agent install`'s flags.
#[derive(clap::Parser, Debug)]
#[command(
    name = "ferry-agent install",
    version,
    about = "Set up this machine as a Ferry build agent: fetch and check the cluster CA, enroll, \
             write /etc/ferry/agent.env, start ferry-agent.service (the line `ferry token create` \
             prints)"
)]
pub struct InstallArgs {
    /// Coordinator addresses, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub coordinator: Vec<String>,
    /// The join token (from `ferry token create`); not kept after enrollment.
    #[arg(long)]
    pub token: String,
    /// The sha256 of the cluster CA certificate (DER), hex: the CA fetched is
    /// refused unless it matches.
    #[arg(long)]
    pub ca_sha256: String,
    /// Labels pipelines select with `runs_on`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Agent name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// HOST:PORT other agents fetch artifacts from (default: the agent's, 127.0.0.1:0).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Say what would be done, change nothing (the CA is still fetched and checked).
    #[arg(long)]
    pub dry_run: bool,
    /// Where ca.pem and agent.env go.
    #[arg(long, default_value = "/etc/ferry")]
    pub etc: PathBuf,
    /// The agent's state dir (its key and certificate).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Do not enable and start ferry-agent.service.
    #[arg(long)]
    pub no_start: bool,
}

/// Runs `ferry-agent install`; `name` is the agent name to use when
/// `--name` is not given.
pub async fn run(args: InstallArgs, default_name: String) -> anyhow::Result<()> {
    let pinned = normalize_hash(&args.ca_sha256)?;
    for path in [&args.etc, &args.state_dir] {
        let text = path.to_string_lossy();
        if text.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '$') {
            bail!(
                "{} contains spaces, quotes, `\\` or `$`, which agent.env cannot carry",
                path.display()
            );
        }
    }
    let name = args.name.clone().unwrap_or(default_name);
    ferry_certs::validate_agent_name(&name).context("agent name (--name)")?;
    let would = if args.dry_run { "would " } else { "" };
    let mut changed = false;

    // 1. The CA, checked against the pin, then the coordinator, against the CA.
    let (from, ca_pem) = fetch_checked_ca(&args.coordinator, &pinned).await?;
    println!(
        "cluster CA: fetched from {from}; its sha256 is the --ca-sha256 given, and {from} proves \
         it is a coordinator of that CA"
    );

    // 2. ca.pem.
    let ca_path = args.etc.join("ca.pem");
    let state_ca = args.state_dir.join("ca.pem");
    let (cert_path, _) = crate::identity::pair_paths(&args.state_dir);
    let enrolled = cert_path.exists();
    if enrolled {
        let theirs = std::fs::read_to_string(&state_ca).unwrap_or_default();
        if theirs.trim() != ca_pem.trim() {
            bail!(
                "{} holds an agent enrolled with another cluster (its ca.pem is not this CA); \
                 to move it, `ferry agents remove` it there and empty the state dir first",
                args.state_dir.display()
            );
        }
    }
    if same_text(&ca_path, &ca_pem) {
        println!("ca.pem: {} unchanged", ca_path.display());
    } else {
        changed = true;
        println!("ca.pem: {would}write {}", ca_path.display());
        if !args.dry_run {
            std::fs::create_dir_all(&args.etc)
                .with_context(|| format!("creating {}", args.etc.display()))?;
            write_file(&ca_path, &ca_pem, 0o644)?;
        }
    }

    // 3. Enrollment.
    let sans = args
        .advertise
        .as_deref()
        .map(|a| {
            let host = a
                .rsplit_once(':')
                .map_or(a, |(h, _)| h)
                .trim_matches(['[', ']']);
            crate::identity::sans_for(host)
        })
        .unwrap_or_default();
    if enrolled {
        println!(
            "enrollment: already enrolled with this cluster ({})",
            args.state_dir.display()
        );
    } else if args.dry_run {
        changed = true;
        println!(
            "enrollment: would enroll as {name}{} with the join token into {}",
            labels_note(&args.labels),
            args.state_dir.display()
        );
    } else {
        changed = true;
        create_private_dir(&args.state_dir)?;
        let id = crate::identity::load_or_enroll(
            &args.state_dir,
            &args.coordinator,
            Some(&args.token),
            Some(&ca_path),
            crate::identity::Enrollment {
                name: &name,
                sans: &sans,
                labels: &args.labels,
            },
        )
        .await?;
        println!(
            "enrollment: enrolled as {}{}; key and certificate in {}",
            id.identity,
            labels_note(&args.labels),
            args.state_dir.display()
        );
    }

    // 4. agent.env.
    let env_path = args.etc.join("agent.env");
    let env = agent_env(&args, &name, &ca_path, &pinned);
    if same_text(&env_path, &env) {
        println!("agent.env: {} unchanged", env_path.display());
    } else {
        changed = true;
        println!(
            "agent.env: {would}write {} (mode 0600, coordinators and flags; no join token)",
            env_path.display()
        );
        if !args.dry_run {
            std::fs::create_dir_all(&args.etc)
                .with_context(|| format!("creating {}", args.etc.display()))?;
            write_file(&env_path, &env, 0o600)?;
        }
    }

    // 5. Ownership of the state dir.
    match user_ids(USER) {
        None => println!("owner: no user {USER} here; files keep their owner"),
        Some((uid, gid)) => {
            let wrong = not_owned(&args.state_dir, uid);
            if wrong.is_empty() && (enrolled || !args.dry_run) {
                println!("owner: {} belongs to {USER}", args.state_dir.display());
            } else {
                changed = true;
                println!(
                    "owner: {would}give {} to user {USER}",
                    args.state_dir.display()
                );
                if !args.dry_run {
                    for path in wrong {
                        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                            .with_context(|| format!("chown {USER} {}", path.display()))?;
                    }
                }
            }
        }
    }

    // 6. The service.
    let systemd = Path::new("/run/systemd/system").exists();
    if args.no_start {
        println!("service: not started (--no-start)");
    } else if !systemd {
        println!(
            "service: not started: systemd is not running here; start the agent with the \
             settings in {}",
            env_path.display()
        );
    } else {
        let enabled = systemctl_quiet(&["is-enabled", "--quiet", UNIT]);
        let active = systemctl_quiet(&["is-active", "--quiet", UNIT]);
        if enabled && active && !changed {
            println!("service: {UNIT} enabled and running");
        } else {
            let verb = if active { "restart" } else { "enable --now" };
            changed = true;
            println!("service: {would}systemctl {verb} {UNIT}");
            if !args.dry_run {
                if active {
                    systemctl(&["enable", UNIT])?;
                    systemctl(&["restart", UNIT])?;
                } else {
                    systemctl(&["enable", "--now", UNIT])?;
                }
            }
        }
    }

    if !changed {
        println!("nothing to do: already enrolled with this cluster, config unchanged");
    } else if args.dry_run {
        println!("dry run: nothing was changed");
    } else {
        println!("done: this machine is a Ferry agent ({name})");
    }
    Ok(())
}

fn labels_note(labels: &[String]) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!(" with labels {}", labels.join(","))
    }
}

/// The hex sha256 in `text`, lowercase, without `:` separators or a
/// `sha256:` prefix.
pub fn normalize_hash(text: &str) -> anyhow::Result<String> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--ca-sha256 must be 64 hex digits (the sha256 `ferry token create` prints)");
    }
    Ok(hex)
}

/// The sha256 (hex) of the one certificate in `pem`.
pub fn ca_sha256(pem: &str) -> anyhow::Result<String> {
    use rustls::pki_types::pem::PemObject;
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let first = certs
        .next()
        .context("no certificate in the CA PEM")?
        .context("the CA PEM cannot be read")?;
    if certs.next().is_some() {
        bail!("the CA PEM holds more than one certificate");
    }
    Ok(ferry_certs::fingerprint(first.as_ref()))
}

/// Fetches the CA from the first coordinator that answers, checks it
/// against `pinned`, then asks the same coordinator again over a connection
/// verified with that CA (as a coordinator).
async fn fetch_checked_ca(
    coordinators: &[String],
    pinned: &str,
) -> anyhow::Result<(String, String)> {
    let mut errors = Vec::new();
    for addr in coordinators {
        let ca_pem = match fetch_ca(addr, None).await {
            Ok(pem) => pem,
            Err(e) => {
                errors.push(format!("{addr}: {e:#}"));
                continue;
            }
        };
        let got = ca_sha256(&ca_pem).with_context(|| format!("the CA {addr} sent"))?;
        if got != pinned {
            bail!(
                "refusing the CA {addr} sent: its sha256 is {got}, not the --ca-sha256 given \
                 ({pinned}). Either the address is not your cluster, or someone is in between; \
                 nothing was written"
            );
        }
        let again = fetch_ca(addr, Some(&ca_pem))
            .await
            .with_context(|| format!("verifying {addr} as a coordinator of the pinned CA"))?;
        if again.trim() != ca_pem.trim() {
            bail!("{addr} sent another CA over the verified connection; nothing was written");
        }
        return Ok((addr.clone(), ca_pem));
    }
    bail!(
        "could not fetch the cluster CA from any coordinator: {}",
        errors.join("; ")
    )
}

/// `GetClusterCa` from `addr`: verified as a coordinator of `ca_pem` if
/// given, else over a connection that checks only the handshake signature.
async fn fetch_ca(addr: &str, ca_pem: Option<&str>) -> anyhow::Result<String> {
    let endpoint = match ca_pem {
        Some(ca) => {
            ferry_certs::tls::endpoint(addr, ca, None, ferry_certs::tls::Expected::Coordinator)?
        }
        None => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .with_context(|| format!("coordinator address {addr}"))?
            .tls_config_with_verifier(
                tonic::transport::ClientTlsConfig::new()
                    .domain_name(ferry_certs::tls::host_of(addr)),
                Arc::new(Unverified::new()),
            )?,
    };
    let channel = endpoint
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await?;
    let reply = pb::enrollment_client::EnrollmentClient::new(channel)
        .get_cluster_ca(pb::GetClusterCaRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    Ok(reply.ca_pem)
}

/// Accepts any server certificate (still checking that the server holds its
/// key): used only to fetch the CA, which is then checked against the pinned
/// hash before anything is trusted or sent.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl Unverified {
    fn new() -> Unverified {
        Unverified(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The agent.env `install` writes: the coordinators and the flags, no token.
fn agent_env(args: &InstallArgs, name: &str, ca_path: &Path, pinned: &str) -> String {
    let mut opts = vec![
        format!("--ca {}", ca_path.display()),
        format!("--name {name}"),
    ];
    if args.state_dir != Path::new(DEFAULT_STATE_DIR) {
        opts.push(format!("--state-dir {}", args.state_dir.display()));
    }
    if !args.labels.is_empty() {
        opts.push(format!("--labels {}", args.labels.join(",")));
    }
    if let Some(a) = &args.advertise {
        opts.push(format!("--advertise {a}"));
    }
    format!(
        "# Written by `ferry-agent install`: the settings of ferry-agent.service (see\n\
         # ferry-agent(1)). The agent is enrolled (its key and certificate are in\n\
         # {state}), so no join token is kept here. The cluster CA's sha256:\n\
         # {pinned}\n\
         # After a change: systemctl restart ferry-agent\n\
         FERRY_COORDINATOR={coordinators}\n\
         FERRY_AGENT_OPTS=\"{opts}\"\n",
        state = args.state_dir.display(),
        coordinators = args.coordinator.join(","),
        opts = opts.join(" "),
    )
}

fn same_text(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t == text)
}

/// Writes `text` to `path` with `mode` through a temporary file and a rename.
fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("install-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// The uid and gid of `user` in /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == user)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// `dir` and everything under it not owned by `uid`.
fn not_owned(dir: &Path, uid: u32) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut wrong = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() != uid {
            wrong.push(path.clone());
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
    wrong
}

fn systemctl_quiet(args: &[&str]) -> bool {
    Command::new("systemctl")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .context("running systemctl")?;
    if !status.success() {
        bail!("systemctl {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_hash;

    #[test]
    fn hashes_are_read_in_the_usual_spellings() {
        let hex = "ab".repeat(32);
        assert_eq!(normalize_hash(&hex).unwrap(), hex);
        assert_eq!(normalize_hash(&hex.to_uppercase()).unwrap(), hex);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalize_hash(&format!("sha256:{colons}")).unwrap(), hex);
        assert!(normalize_hash("abc").is_err());
        assert!(normalize_hash(&"zz".repeat(32)).is_err());
    }
}
