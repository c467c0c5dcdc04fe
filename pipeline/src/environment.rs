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

use std::net::{Ipv4Addr, Ipv6Addr};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{LoadError, LoaderOptions, Marker, Node};
use serde::{Deserialize, Serialize};

use crate::name::validate_name;
use crate::parse::{Diagnostic, Pos};
use crate::rules::validate_secret_name;

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

const TOP_LEVEL_MESSAGE: &str =
    "an environment file must be a mapping with `name` and `hosts` at the top level";

/// Parses and validates an environment file; every error, sorted by position.
pub fn parse_environment(text: &str) -> Result<Environment, Vec<Diagnostic>> {
    // YAML allows a byte order mark; the scanner would read it as part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_blank(text) {
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            "the environment file is empty; expected a mapping with `name` and `hosts`",
        )]);
    }
    let options = LoaderOptions::default()
        .toplevel_mapping()
        .error_on_duplicate_keys(true)
        // Keeps quoted scalars distinguishable: "1" is a string, ~ is null but "~" is not.
        .prevent_coercion(true);
    let root =
        marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| vec![load_error(&e)])?;
    let Some(map) = root.as_mapping() else {
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            TOP_LEVEL_MESSAGE,
        )]);
    };
    let mut diags = Vec::new();
    if let Some(end) = map.span().end() {
        diags.extend(extra_document(text, end));
    }
    let environment = Reader { diags: &mut diags }.environment(map);
    if diags.is_empty() {
        Ok(environment)
    } else {
        // Stable sort: diagnostics at the same position keep their discovery order.
        diags.sort_by_key(|d| (d.line, d.column));
        Err(diags)
    }
}

/// Nothing but whitespace, comments and document markers.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// The loader reads only the first YAML document and ignores what follows;
/// report a second document (or trailing content) instead of dropping it.
fn extra_document(text: &str, end: &Marker) -> Option<Diagnostic> {
    let byte = text
        .char_indices()
        .nth(end.character())
        .map_or(text.len(), |(i, _)| i);
    let rest = text.get(byte..)?;
    // A flow mapping (`{...}`) ends *at* its closing brace.
    let (rest, first_column) = match rest.strip_prefix('}') {
        Some(after_brace) => (after_brace, end.column() + 1),
        None => (rest, end.column()),
    };
    let mut separator = None;
    for (offset, line) in rest.lines().enumerate() {
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let here = Pos {
            line: end.line() + offset,
            column: if offset == 0 { first_column } else { 1 } + indent,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "..." {
            continue;
        }
        if let Some(after) = trimmed.strip_prefix("---") {
            let after = after.trim_start();
            if after.is_empty() || after.starts_with('#') {
                separator.get_or_insert(here);
                continue;
            }
        }
        return Some(match separator {
            Some(at) => Diagnostic::at(
                at,
                "an environment file must contain a single YAML document",
            ),
            None => Diagnostic::at(here, "unexpected content after the top-level mapping"),
        });
    }
    None
}

fn load_error(error: &LoadError) -> Diagnostic {
    let (marker, message) = match error {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (Some(m), TOP_LEVEL_MESSAGE.to_string())
        }
        LoadError::UnexpectedAnchor(m) => (
            Some(m),
            "YAML anchors and aliases are not supported".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(m), "mapping keys must be plain strings".to_string())
        }
        LoadError::UnexpectedTag(m) => (
            Some(m),
            "YAML tags (like `!!str`) are not supported".to_string(),
        ),
        LoadError::ScanError(m, e) => (Some(m), format!("YAML syntax error: {}", e.info())),
        LoadError::DuplicateKey(inner) => {
            let first = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first defined at {})", Pos::from(m)))
                .unwrap_or_default();
            (
                inner.key.span().start(),
                format!("duplicate key `{}`{first}", inner.key.as_str()),
            )
        }
    };
    let pos = marker.map_or(Pos { line: 1, column: 1 }, Pos::from);
    Diagnostic::at(pos, message)
}

// ---- reader ------------------------------------------------------------------

/// Reads the node tree, recording every problem and carrying on, so one
/// pass reports everything that is wrong.
struct Reader<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::at(pos, message));
    }

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
            let mut seen: Vec<(String, Pos)> = Vec::new();
            for item in list.iter() {
                let (host_name, host) = self.host(Value::item(item), &name);
                if let Some((host_name, at)) = host_name {
                    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == host_name) {
                        self.error(
                            at,
                            format!("host `{host_name}` is listed twice (first at {first})"),
                        );
                    } else {
                        seen.push((host_name, at));
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

    /// The required `name` key, checked against the name rule.
    fn name_field(&mut self, map: &MarkedMappingNode, what: &str) -> Option<(String, Pos)> {
        let (name, at) = self.required_string(map, "name", what)?;
        match validate_name(&name) {
            Ok(()) => Some((name, at)),
            Err(reason) => {
                self.error(at, format!("invalid {what} name {name:?}: {reason}"));
                None
            }
        }
    }

    fn secret_name(&mut self, secret: String, at: Pos) -> Option<String> {
        match validate_secret_name(&secret) {
            Ok(()) => Some(secret),
            Err(reason) => {
                self.error(at, format!("invalid secret name {secret:?}: {reason}"));
                None
            }
        }
    }

    // ---- keys and types --------------------------------------------------

    /// Reports every key of `map` that is not in `allowed`.
    fn check_keys(&mut self, map: &MarkedMappingNode, what: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    pos(key.span()),
                    format!(
                        "unknown key `{}` in {what}; expected one of: {}",
                        key.as_str(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn required<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<Value<'n>> {
        let value = field(map, key);
        if value.is_none() {
            self.error(
                mapping_pos(map),
                format!("missing required key `{key}` in {what}"),
            );
        }
        value
    }

    fn required_string(
        &mut self,
        map: &MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<(String, Pos)> {
        let value = self.required(map, key, what)?;
        self.string(value, &format!("`{key}`"))
    }

    fn required_list<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<&'n MarkedSequenceNode> {
        let value = self.required(map, key, what)?;
        let list = value.node.as_sequence();
        if list.is_none() {
            self.error(
                value.pos(),
                format!("`{key}` must be a list, found {}", describe(value.node)),
            );
        }
        list
    }

    fn mapping<'n>(&mut self, value: Value<'n>, what: &str) -> Option<&'n MarkedMappingNode> {
        let map = value.node.as_mapping();
        if map.is_none() {
            self.error(
                value.pos(),
                format!("{what} must be a mapping, found {}", describe(value.node)),
            );
        }
        map
    }

    /// Any non-null scalar, as written.
    fn string(&mut self, value: Value<'_>, what: &str) -> Option<(String, Pos)> {
        let at = value.pos();
        match value.node.as_scalar() {
            Some(scalar) if !is_null(scalar) => Some((scalar.as_str().to_string(), at)),
            _ => {
                self.error(
                    at,
                    format!("{what} must be a string, found {}", describe(value.node)),
                );
                None
            }
        }
    }
}

/// A node together with the position of the key it belongs to, if any.
#[derive(Clone, Copy)]
struct Value<'n> {
    node: &'n Node,
    key: Option<Pos>,
}

impl<'n> Value<'n> {
    /// A list item: it has no key.
    fn item(node: &'n Node) -> Self {
        Value { node, key: None }
    }

    /// Where to report a problem with this value. Null values (`key:` with
    /// nothing after it) are reported at their key, since the loader places
    /// them at the next token.
    fn pos(&self) -> Pos {
        match (self.node, self.key) {
            (Node::Scalar(s), Some(key)) if is_null(s) => key,
            (Node::Mapping(map), _) => mapping_pos(map),
            _ => pos(self.node.span()),
        }
    }

    /// The key's position, or the value's for a list item.
    fn key_pos(&self) -> Pos {
        self.key.unwrap_or_else(|| self.pos())
    }
}

/// The value under `key` in `map`, with the key's position.
fn field<'n>(map: &'n MarkedMappingNode, key: &str) -> Option<Value<'n>> {
    map.get_key_value(key).map(|(key, node)| Value {
        node,
        key: Some(pos(key.span())),
    })
}

/// Where a mapping starts. The loader marks a block mapping after its first
/// key, so the first key's position is used when it comes earlier.
fn mapping_pos(map: &MarkedMappingNode) -> Pos {
    let start = pos(map.span());
    map.keys()
        .next()
        .map(|key| pos(key.span()))
        .map_or(start, |first_key| first_key.min(start))
}

/// Start of a span (every node the loader produces has one).
fn pos(span: &marked_yaml::Span) -> Pos {
    span.start().map_or(Pos { line: 1, column: 1 }, Pos::from)
}

/// A plain (unquoted) `~`, `null` or empty scalar.
fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// How a node is named in type errors.
fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_string(),
        Node::Sequence(_) => "a list".to_string(),
        Node::Scalar(s) if is_null(s) => "nothing (null)".to_string(),
        Node::Scalar(s) => format!("{:?}", s.as_str()),
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
