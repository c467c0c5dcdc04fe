//! Environment files: the deployment targets (SSH hosts and Docker
//! endpoints) that deploy actions can use. Read like pipeline files: YAML
//! with a position for every node, unknown keys refused, and every problem
//! reported with its line and column, sorted by position.
//!
//! ```yaml
//! name: staging
//! hosts:
//!   - name: web1
//!     ssh:
//!       address: 10.0.0.11:22
//!       user: deploy
//!       host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI..."
//!       key_secret: staging-ssh
//!       path: /srv/app
//!   - name: api1
//!     docker:
//!       endpoint: tcp://10.0.0.20:2376
//!       tls_secret: docker-tls
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use marked_yaml::types::MarkedMappingNode;
use serde::{Deserialize, Serialize};

use crate::limits::MAX_ENVIRONMENT_BYTES;
use crate::parse::{Diagnostic, Pos};
use crate::rules::validate_secret_name;
use crate::yaml::{self, DocumentKind, Reader, Value, field, mapping_pos, pos};

/// SSH port used when `address` has none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// Directory under which a host deploys when `ssh.path` is not given:
/// the default path is `/srv/<environment name>`.
pub const DEFAULT_DEPLOY_ROOT: &str = "/srv";

/// Longest accepted SSH user name.
pub const MAX_SSH_USER_LEN: usize = 32;

/// Host key types accepted in `ssh.host_key`.
pub const HOST_KEY_ALGORITHMS: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Prefix of a pinned host key fingerprint, as printed by `ssh-keygen -l`.
const FINGERPRINT_PREFIX: &str = "SHA256:";

/// Length of the unpadded base64 of a SHA-256 digest (32 bytes).
const FINGERPRINT_BASE64_LEN: usize = 43;

const ENVIRONMENT_KEYS: &[&str] = &["name", "hosts"];
const HOST_KEYS: &[&str] = &["name", "ssh", "docker"];
const SSH_KEYS: &[&str] = &["address", "user", "host_key", "key_secret", "path"];
const DOCKER_KEYS: &[&str] = &["endpoint", "tls_secret"];

// ---- model -----------------------------------------------------------------

/// A validated environment: a named set of deployment targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    /// At least one host; names are unique.
    pub hosts: Vec<Host>,
}

/// One deployment target of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub target: Target,
}

/// How a host is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Ssh(SshTarget),
    Docker(DockerTarget),
}

/// A host reached over SSH, with a pinned host key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    /// DNS name, IPv4 address, or IPv6 address (without the brackets).
    pub host: String,
    /// Defaults to [`DEFAULT_SSH_PORT`].
    pub port: u16,
    pub user: String,
    pub host_key: HostKey,
    /// Name of the secret holding the private key.
    pub key_secret: String,
    /// Absolute deploy directory; defaults to `/srv/<environment name>`.
    pub path: String,
}

/// The pinned identity of an SSH server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKey {
    /// A public key as in an OpenSSH `.pub` or `known_hosts` line (the
    /// comment is dropped). `base64` decodes to a key of type `algorithm`.
    PublicKey { algorithm: String, base64: String },
    /// A fingerprint as printed by `ssh-keygen -l`, including the prefix:
    /// `SHA256:` followed by 43 unpadded base64 characters.
    Fingerprint(String),
}

/// A Docker Engine reached directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerTarget {
    /// `tcp://HOST[:PORT]` or `unix:///absolute/path`.
    pub endpoint: String,
    /// Name of the secret holding the CA, certificate and key PEMs (tcp only).
    pub tls_secret: Option<String>,
}

// ---- entry point -------------------------------------------------------------

/// The wording for environment files in loader errors.
const ENVIRONMENT_FILE: DocumentKind = DocumentKind {
    name: "an environment file",
    subject: "the environment file",
    max_bytes: MAX_ENVIRONMENT_BYTES,
    empty_message: "the environment file is empty; expected a mapping with `name` and `hosts`",
    top_level_message: "an environment file must be a mapping with `name` and `hosts` at the top level",
};

/// Parses and validates an environment file; every error, sorted by position.
pub fn parse_environment(text: &str) -> Result<Environment, Vec<Diagnostic>> {
    yaml::load(text, &ENVIRONMENT_FILE, |map, diags| {
        Reader::new(diags).environment(map)
    })
}

// ---- reader ------------------------------------------------------------------

/// The environment's structure, read with the shared [`Reader`].
impl Reader<'_> {
    fn environment(&mut self, root: &MarkedMappingNode) -> Environment {
        self.check_keys(root, "environment", ENVIRONMENT_KEYS);
        let name = self
            .name_field(root, "environment")
            .map(|(name, _)| name)
            .unwrap_or_default();
        let mut hosts = Vec::new();
        if let Some(list) = self.required_list(root, "hosts", "environment") {
            if list.is_empty() {
                self.error(pos(list.span()), "`hosts` must list at least one host");
            }
            // Where each host name was first seen: one lookup per host, so a
            // megabyte of hosts costs no quadratic time.
            let mut seen: HashMap<String, Pos> = HashMap::new();
            for item in list.iter() {
                let (host_name, host) = self.host(Value::item(item), &name);
                if let Some((host_name, at)) = host_name {
                    if let Some(first) = seen.get(&host_name) {
                        self.error(
                            at,
                            format!("host `{host_name}` is listed twice (first at {first})"),
                        );
                    } else {
                        seen.insert(host_name, at);
                    }
                }
                hosts.extend(host);
            }
        }
        Environment { name, hosts }
    }

    /// One host: its valid name (for the duplicate check) and, when
    /// everything in it is valid, the host itself.
    fn host(
        &mut self,
        value: Value<'_>,
        environment: &str,
    ) -> (Option<(String, Pos)>, Option<Host>) {
        let Some(map) = self.mapping(value, "each host") else {
            return (None, None);
        };
        self.check_keys(map, "host", HOST_KEYS);
        let name = self.name_field(map, "host");
        let target = match (field(map, "ssh"), field(map, "docker")) {
            (Some(ssh), None) => self.ssh(ssh, environment).map(Target::Ssh),
            (None, Some(docker)) => self.docker(docker).map(Target::Docker),
            (None, None) => {
                self.error(
                    mapping_pos(map),
                    "a host needs exactly one of `ssh` or `docker`; found neither",
                );
                None
            }
            (Some(ssh), Some(docker)) => {
                // Point at whichever of the two keys comes second.
                let second = ssh.key_pos().max(docker.key_pos());
                self.error(
                    second,
                    "a host needs exactly one of `ssh` or `docker`; found both",
                );
                // Still read both, to report what is wrong inside them.
                self.ssh(ssh, environment);
                self.docker(docker);
                None
            }
        };
        let host = match (&name, target) {
            (Some((name, _)), Some(target)) => Some(Host {
                name: name.clone(),
                target,
            }),
            _ => None,
        };
        (name, host)
    }

    fn ssh(&mut self, value: Value<'_>, environment: &str) -> Option<SshTarget> {
        let map = self.mapping(value, "`ssh`")?;
        self.check_keys(map, "ssh", SSH_KEYS);
        let address = self
            .required_string(map, "address", "ssh")
            .and_then(|(text, at)| match parse_host_port(&text) {
                Ok((host, port)) => Some((host, port.unwrap_or(DEFAULT_SSH_PORT))),
                Err(reason) => {
                    self.error(at, format!("invalid address {text:?}: {reason}"));
                    None
                }
            });
        let user = self
            .required_string(map, "user", "ssh")
            .and_then(|(user, at)| match check_ssh_user(&user) {
                Ok(()) => Some(user),
                Err(reason) => {
                    self.error(at, format!("invalid user {user:?}: {reason}"));
                    None
                }
            });
        let host_key = self
            .required_string(map, "host_key", "ssh")
            .and_then(|(text, at)| match parse_host_key(&text) {
                Ok(key) => Some(key),
                Err(reason) => {
                    self.error(at, format!("invalid `host_key`: {reason}"));
                    None
                }
            });
        let key_secret = self
            .required_string(map, "key_secret", "ssh")
            .and_then(|(secret, at)| self.secret_name(secret, at));
        let path = match field(map, "path") {
            Some(value) => {
                self.string(value, "`path`")
                    .and_then(|(path, at)| match check_deploy_path(&path) {
                        Ok(()) => Some(path),
                        Err(message) => {
                            self.error(at, message);
                            None
                        }
                    })
            }
            None => Some(format!("{DEFAULT_DEPLOY_ROOT}/{environment}")),
        };
        let (Some((host, port)), Some(user), Some(host_key), Some(key_secret), Some(path)) =
            (address, user, host_key, key_secret, path)
        else {
            return None;
        };
        Some(SshTarget {
            host,
            port,
            user,
            host_key,
            key_secret,
            path,
        })
    }

    fn docker(&mut self, value: Value<'_>) -> Option<DockerTarget> {
        let map = self.mapping(value, "`docker`")?;
        self.check_keys(map, "docker", DOCKER_KEYS);
        let endpoint =
            self.required_string(map, "endpoint", "docker")
                .and_then(|(endpoint, at)| match check_docker_endpoint(&endpoint) {
                    Ok(kind) => Some((endpoint, kind)),
                    Err(reason) => {
                        self.error(
                            at,
                            format!("invalid docker endpoint {endpoint:?}: {reason}"),
                        );
                        None
                    }
                });
        let tls_secret = match field(map, "tls_secret") {
            None => Ok(None),
            Some(value) => match self.string(value, "`tls_secret`") {
                Some((secret, at)) => {
                    if endpoint
                        .as_ref()
                        .is_some_and(|(_, kind)| *kind == EndpointKind::Unix)
                    {
                        self.error(
                            at,
                            "`tls_secret` is only for tcp:// endpoints; a unix:// socket does not use TLS",
                        );
                    }
                    self.secret_name(secret, at).map(Some).ok_or(())
                }
                None => Err(()),
            },
        };
        let (Some((endpoint, _)), Ok(tls_secret)) = (endpoint, tls_secret) else {
            return None;
        };
        Some(DockerTarget {
            endpoint,
            tls_secret,
        })
    }

    // ---- fields ----------------------------------------------------------

    fn secret_name(&mut self, secret: String, at: Pos) -> Option<String> {
        match validate_secret_name(&secret) {
            Ok(()) => Some(secret),
            Err(reason) => {
                self.error(at, format!("invalid secret name {secret:?}: {reason}"));
                None
            }
        }
    }
}

// ---- value rules -------------------------------------------------------------

/// Splits `HOST[:PORT]` where HOST is a DNS name, an IPv4 address or an
/// IPv6 address in brackets. Returns the host (IPv6 without brackets) and
/// the port if one was written.
pub(crate) fn parse_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    if text.is_empty() {
        return Err("must not be empty".to_string());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("an IPv6 address opened with '[' needs a closing ']'".to_string());
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{inside}` is not a valid IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| "expected `:PORT` after ']'".to_string())?,
            ),
        };
        (inside, port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(
                    "an IPv6 address must be written in brackets, like [2001:db8::1]:22"
                        .to_string(),
                );
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        check_host_name(host)?;
        (host, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_string(), port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|&port| port != 0 && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("the port must be a number from 1 to 65535, found {text:?}"))
}

/// A DNS name or a dotted-quad IPv4 address.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("`{host}` is not a valid IPv4 address"));
    }
    let invalid = |reason: &str| format!("`{host}` is not a valid host name: {reason}");
    if host.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(
                "each dot-separated part must have 1 to 63 characters",
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(invalid(&format!(
                "contains {bad:?}; only letters, digits, '-' and '.' are allowed"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a part must not start or end with '-'"));
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(invalid("the last part must not be all digits"));
    }
    Ok(())
}

/// SSH user names: `[a-z_][a-z0-9_-]{0,31}`.
fn check_ssh_user(user: &str) -> Result<(), String> {
    let Some(first) = user.chars().next() else {
        return Err("must not be empty".to_string());
    };
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err("must start with a lowercase letter (a-z) or '_'".to_string());
    }
    if let Some(bad) = user
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; only lowercase letters, digits, '_' and '-' are allowed"
        ));
    }
    if user.len() > MAX_SSH_USER_LEN {
        return Err(format!(
            "must be at most {MAX_SSH_USER_LEN} characters long (it has {})",
            user.len()
        ));
    }
    Ok(())
}

/// An OpenSSH public key line (`TYPE BASE64 [COMMENT]`) or a
/// `SHA256:<43 base64 characters>` fingerprint.
fn parse_host_key(text: &str) -> Result<HostKey, String> {
    if text.chars().any(char::is_control) {
        return Err("must be a single line without control characters".to_string());
    }
    let text = text.trim();
    if let Some(digest) = text.strip_prefix(FINGERPRINT_PREFIX) {
        check_fingerprint(digest)?;
        return Ok(HostKey::Fingerprint(text.to_string()));
    }
    let mut parts = text.split_whitespace();
    let (Some(algorithm), Some(data)) = (parts.next(), parts.next()) else {
        if text.contains(':') {
            return Err(
                "only SHA256 fingerprints are accepted, like SHA256:<43 base64 characters> \
                 (as printed by `ssh-keygen -l`)"
                    .to_string(),
            );
        }
        return Err("expected a public key `TYPE BASE64 [COMMENT]` \
                    or a fingerprint `SHA256:...`"
            .to_string());
    };
    if !HOST_KEY_ALGORITHMS.contains(&algorithm) {
        return Err(format!(
            "unsupported key type `{algorithm}`; expected one of: {}",
            HOST_KEY_ALGORITHMS.join(", ")
        ));
    }
    let Some(blob) = decode_base64(data) else {
        return Err("the key data is not valid base64".to_string());
    };
    match blob_key_type(&blob) {
        Some(inner) if inner == algorithm.as_bytes() => {}
        Some(inner) => {
            return Err(format!(
                "the key data is a `{}` key, not `{algorithm}`",
                String::from_utf8_lossy(inner)
            ));
        }
        None => return Err("the key data is not an OpenSSH public key".to_string()),
    }
    Ok(HostKey::PublicKey {
        algorithm: algorithm.to_string(),
        base64: data.to_string(),
    })
}

fn check_fingerprint(digest: &str) -> Result<(), String> {
    let valid = digest.len() == FINGERPRINT_BASE64_LEN
        && !digest.contains('=')
        // Re-padded, 43 characters are exactly one 32-byte SHA-256 digest.
        && decode_base64(&format!("{digest}=")).is_some_and(|bytes| bytes.len() == 32);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a fingerprint must be SHA256: followed by {FINGERPRINT_BASE64_LEN} base64 \
             characters without padding (as printed by `ssh-keygen -l`)"
        ))
    }
}

/// Strict standard base64 with padding; `None` if anything is off,
/// including non-zero bits left over in the last character.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in &bytes[..bytes.len() - padding] {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// The key type an OpenSSH public key blob starts with: a big-endian
/// `u32` length and that many bytes.
fn blob_key_type(blob: &[u8]) -> Option<&[u8]> {
    let (len, rest) = blob.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    rest.get(..len)
}

/// A deploy directory: absolute, no `..` component, no control characters.
fn check_deploy_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`path` must be an absolute path, found {path:?}"));
    }
    if path.split('/').any(|component| component == "..") {
        return Err(format!(
            "`path` must not contain a `..` component, found {path:?}"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!(
            "`path` must not contain control characters, found {path:?}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointKind {
    Tcp,
    Unix,
}

/// `tcp://HOST[:PORT]` or `unix:///absolute/path`.
fn check_docker_endpoint(endpoint: &str) -> Result<EndpointKind, String> {
    if let Some(address) = endpoint.strip_prefix("tcp://") {
        parse_host_port(address)?;
        Ok(EndpointKind::Tcp)
    } else if let Some(path) = endpoint.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err("a unix:// endpoint needs an absolute socket path, like \
                 unix:///var/run/docker.sock"
                .to_string());
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                "the socket path must not contain whitespace or control characters".to_string(),
            );
        }
        Ok(EndpointKind::Unix)
    } else {
        Err("expected tcp://HOST:PORT or unix:///PATH".to_string())
    }
}
