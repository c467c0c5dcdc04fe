//! Ferry identities: SPIFFE-style URI SANs of the form
//! `spiffe://<trust-domain>/{coordinator,agent,operator}/<name>`, their
//! validation, and extraction from DER certificates.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

use crate::CertError;

/// URI scheme prefix of every Ferry identity.
pub(crate) const SPIFFE_PREFIX: &str = "spiffe://";

/// Longest accepted coordinator/agent/operator name.
const MAX_NAME_LEN: usize = 63;
/// Longest accepted trust domain (SPIFFE's limit).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// The role a certificate holder plays in a Ferry cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// A coordinator (Raft member); its name is its numeric id.
    Coordinator,
    /// A build agent.
    Agent,
    /// A person using the CLI.
    Operator,
}

impl IdentityKind {
    /// The path segment used in identity URIs.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Coordinator => "coordinator",
            IdentityKind::Agent => "agent",
            IdentityKind::Operator => "operator",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityKind {
    type Err = CertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "coordinator" => Ok(IdentityKind::Coordinator),
            "agent" => Ok(IdentityKind::Agent),
            "operator" => Ok(IdentityKind::Operator),
            other => Err(CertError::InvalidUri {
                uri: other.to_string(),
                reason: "the kind must be \"coordinator\", \"agent\" or \"operator\"".to_string(),
            }),
        }
    }
}

/// Who a certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub trust_domain: String,
    pub kind: IdentityKind,
    pub name: String,
}

impl Identity {
    /// Builds an identity after validating the trust domain and the name.
    /// Coordinator names must be a coordinator id written in decimal.
    pub fn new(trust_domain: &str, kind: IdentityKind, name: &str) -> Result<Identity, CertError> {
        validate_trust_domain(trust_domain)?;
        validate_name(name)?;
        if kind == IdentityKind::Coordinator {
            validate_coordinator_name(name)?;
        }
        Ok(Identity {
            trust_domain: trust_domain.to_string(),
            kind,
            name: name.to_string(),
        })
    }

    /// The identity as a URI, e.g. `spiffe://ferry/agent/build-1`.
    pub fn uri(&self) -> String {
        format!(
            "{SPIFFE_PREFIX}{}/{}/{}",
            self.trust_domain, self.kind, self.name
        )
    }

    /// Parses `spiffe://<trust-domain>/<kind>/<name>`.
    pub fn parse_uri(uri: &str) -> Result<Identity, CertError> {
        let invalid = |reason: &str| CertError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix(SPIFFE_PREFIX)
            .ok_or_else(|| invalid("it does not start with spiffe://"))?;
        let mut parts = rest.split('/');
        let (Some(trust_domain), Some(kind), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                "it must have exactly three parts: trust domain, kind and name",
            ));
        };
        let kind: IdentityKind = kind
            .parse()
            .map_err(|_| invalid("the kind must be \"coordinator\", \"agent\" or \"operator\""))?;
        Identity::new(trust_domain, kind, name).map_err(|e| invalid(&e.to_string()))
    }

    /// Reads the single `spiffe://` URI SAN of a DER certificate.
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, CertError> {
        let uris = spiffe_uris(der)?;
        match uris.as_slice() {
            [] => Err(CertError::NoIdentity),
            [uri] => Identity::parse_uri(uri),
            _ => Err(CertError::AmbiguousIdentity { uris }),
        }
    }

    /// The coordinator id, if this is a coordinator identity.
    pub fn coordinator_id(&self) -> Option<u64> {
        match self.kind {
            IdentityKind::Coordinator => self.name.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Collects all `spiffe://` URI SANs of a DER certificate.
pub(crate) fn spiffe_uris(der: &[u8]) -> Result<Vec<String>, CertError> {
    let invalid = |reason: String| CertError::InvalidCert {
        what: "reading its identity".to_string(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid(format!("not a DER X.509 certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| invalid(format!("malformed subject alternative names: {e}")))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) if u.starts_with(SPIFFE_PREFIX) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Checks a coordinator, agent or operator name: 1..=63 characters of
/// `[a-z0-9._-]`, and not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), CertError> {
    let invalid = |reason: &str| CertError::InvalidName {
        name: clip(name),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 63 characters"));
    }
    if let Some(c) = name.chars().find(|&c| !allowed_char(c)) {
        return Err(invalid(&format!("it contains {c:?}")));
    }
    if name == "." || name == ".." {
        return Err(invalid("it is a path segment"));
    }
    Ok(())
}

/// Agent names that would read as another role or as the cluster itself in
/// identities, listings, logs and role bindings; enrollment refuses them.
pub const RESERVED_AGENT_NAMES: &[&str] = &[
    "admin",
    "administrator",
    "agent",
    "approver",
    "cluster",
    "coordinator",
    "coordinators",
    "ferry",
    "leader",
    "localhost",
    "operator",
    "root",
    "system",
    "viewer",
];

/// Checks an agent's name: a valid name ([`validate_name`]) that is not
/// reserved and not all digits (coordinators are named by number).
pub fn validate_agent_name(name: &str) -> Result<(), CertError> {
    validate_name(name)?;
    let reserved = |reason: &str| CertError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if RESERVED_AGENT_NAMES.contains(&name) {
        return Err(reserved(
            "it is reserved (it names a role or the cluster itself); pick another --name",
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reserved(
            "it is all digits, like a coordinator's id; pick another --name",
        ));
    }
    Ok(())
}

/// Coordinator names are the decimal coordinator id, without leading zeros,
/// so each id has exactly one identity.
fn validate_coordinator_name(name: &str) -> Result<(), CertError> {
    match name.parse::<u64>() {
        Ok(id) if id.to_string() == name => Ok(()),
        _ => Err(CertError::InvalidName {
            name: name.to_string(),
            reason: "a coordinator's name must be its numeric id (decimal, no leading zeros)"
                .to_string(),
        }),
    }
}

/// Checks a trust domain: 1..=255 characters of `[a-z0-9._-]`.
pub(crate) fn validate_trust_domain(trust_domain: &str) -> Result<(), CertError> {
    let invalid = |reason: &str| CertError::InvalidTrustDomain {
        trust_domain: trust_domain.to_string(),
        reason: reason.to_string(),
    };
    if trust_domain.is_empty() {
        return Err(invalid("it is empty"));
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(invalid("it is longer than 255 characters"));
    }
    if let Some(c) = trust_domain.chars().find(|&c| !allowed_char(c)) {
        return Err(invalid(&format!("it contains {c:?}")));
    }
    Ok(())
}

fn allowed_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')
}

/// At most 80 characters of `text`, for error messages: a name that is far too
/// long must not make the error itself too long to deliver.
pub fn clip(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let id = Identity::new("ferry", IdentityKind::Agent, "build-1").expect("valid");
        assert_eq!(id.uri(), "spiffe://ferry/agent/build-1");
        assert_eq!(id.to_string(), id.uri());
        assert_eq!(Identity::parse_uri(&id.uri()).expect("parses"), id);
    }

    #[test]
    fn kinds_display_and_parse() {
        for kind in [
            IdentityKind::Coordinator,
            IdentityKind::Agent,
            IdentityKind::Operator,
        ] {
            assert_eq!(
                kind.to_string().parse::<IdentityKind>().expect("parses"),
                kind
            );
        }
        assert_eq!(IdentityKind::Operator.to_string(), "operator");
    }

    #[test]
    fn names_are_validated() {
        for ok in ["a", "build-1", "x.y_z", &"a".repeat(63)] {
            validate_name(ok).expect(ok);
        }
        for bad in ["", "Build", "a/b", "a b", "é", ".", "..", &"a".repeat(64)] {
            assert!(
                matches!(validate_name(bad), Err(CertError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn coordinator_names_are_ids() {
        let id = Identity::new("ferry", IdentityKind::Coordinator, "42").expect("valid");
        assert_eq!(id.coordinator_id(), Some(42));
        for bad in ["node-1", "042", "", "18446744073709551616"] {
            assert!(Identity::new("ferry", IdentityKind::Coordinator, bad).is_err());
        }
        let agent = Identity::new("ferry", IdentityKind::Agent, "7").expect("valid");
        assert_eq!(agent.coordinator_id(), None);
    }

    #[test]
    fn bad_uris_are_rejected() {
        for bad in [
            "https://ferry/agent/a",
            "spiffe://ferry/agent",
            "spiffe://ferry/agent/a/b",
            "spiffe://ferry/robot/a",
            "spiffe:///agent/a",
            "spiffe://Ferry/agent/a",
            "spiffe://ferry/agent/a?x=1",
            "spiffe://ferry/coordinator/one",
        ] {
            let err = Identity::parse_uri(bad).expect_err(bad);
            assert!(matches!(err, CertError::InvalidUri { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn garbage_der_is_an_error() {
        assert!(matches!(
            Identity::from_cert_der(b"not a certificate"),
            Err(CertError::InvalidCert { .. })
        ));
    }
}
