//! Ferry's private certificate authority: creating and loading the CA key
//! pair on disk, issuing coordinator and operator certificates, and signing
//! agents' CSRs with identities the CA (not the requester) chooses.
//!
//! Agent certificates are never TLS server certificates in the web's sense:
//! their extended key usage is clientAuth and Ferry's own agent-peer purpose
//! ([`AGENT_PEER_EKU`]), not serverAuth, so no browser or other TLS client
//! accepts one for a server (the console, a coordinator) even if it trusts
//! the cluster CA and the name matched; only Ferry's peer client
//! (`tls::Expected::Agent`) asks for that purpose. Nor do they name
//! `localhost` or a loopback address ([`agent_host_refusal`]).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::files::{create_dir, refuse_existing, write_new};
use crate::identity::{SPIFFE_PREFIX, validate_trust_domain};
use crate::{CertError, Identity, IdentityKind, read_pem};

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// CA certificates are valid for ten years.
const CA_VALIDITY: Duration = Duration::from_secs(3653 * 24 * 60 * 60);
/// Coordinator certificates last a year; `ferry certs renew --ca-dir` makes
/// a new one (members load it when restarted).
pub const COORDINATOR_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Operator certificates last 90 days unless issued otherwise; `ferry certs
/// renew` trades a valid one for a fresh one.
pub const OPERATOR_VALIDITY: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Agent certificates last 30 days unless the coordinators say otherwise;
/// agents renew their own over mTLS when a third of that is left.
pub const AGENT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Certificates become valid up to an hour in the past to tolerate clock
/// skew (a tenth of their lifetime when that is shorter).
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Ferry's key purpose for agents' artifact servers, the DER value of OID
/// 2.25.311264690543089418700482719401507454117 (a UUID OID, ITU-T X.667:
/// no registration needed). Agent certificates carry it instead of
/// serverAuth; `tls::PeerVerifier` requires it for `Expected::Agent`.
pub const AGENT_PEER_EKU: &[u8] = &[
    0x69, 0x83, 0xd4, 0xab, 0xb3, 0x86, 0x97, 0x8f, 0xca, 0xb9, 0x93, 0xb2, 0x83, 0xb9, 0xdf, 0xdb,
    0xe5, 0xe9, 0xf9, 0x25,
];

/// The extendedKeyUsage extension (2.5.29.37) of agent certificates, DER:
/// SEQUENCE { id-kp-clientAuth, [`AGENT_PEER_EKU`] } — and no serverAuth.
/// Written by hand because rcgen's custom purposes take 64-bit arcs only.
const AGENT_EKU_EXTENSION: &[u8] = &[
    0x30, 0x20, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02, 0x06, 0x14, 0x69, 0x83,
    0xd4, 0xab, 0xb3, 0x86, 0x97, 0x8f, 0xca, 0xb9, 0x93, 0xb2, 0x83, 0xb9, 0xdf, 0xdb, 0xe5, 0xe9,
    0xf9, 0x25,
];

/// Why `host` may not be a host name of an agent certificate, if it may
/// not: `localhost` (or a name under `.localhost`), a loopback address or
/// an unspecified one (`0.0.0.0`, `::`). A browser on a coordinator's
/// machine reaches the console at such names. An agent reached on loopback
/// needs none: its peers connect to it on the same machine, and
/// `tls::Expected::Agent` checks no host name for a loopback address.
pub fn agent_host_refusal(host: &str) -> Option<String> {
    let host = host.trim_matches(['[', ']']);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() {
            return Some(format!("{host} is a loopback address"));
        }
        if ip.is_unspecified() {
            return Some(format!("{host} is not an address peers can reach"));
        }
        return None;
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost"))
        .then(|| format!("{host} names the local machine"))
}

/// A certificate and its private key, both PEM-encoded.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster's certificate authority, loaded into memory.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    trust_domain: String,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// Creates `dir` if needed and writes `ca.pem` and `ca-key.pem` (key
    /// mode 0600). Refuses if either file exists. The CA certificate carries
    /// the trust domain as URI SAN `spiffe://<trust-domain>`.
    pub fn init(dir: &Path, trust_domain: &str) -> Result<CertAuthority, CertError> {
        validate_trust_domain(trust_domain)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        refuse_existing(dir, &[&cert_path, &key_path])?;

        let key = KeyPair::generate().map_err(CertError::generate("generate the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Ferry");
        dn.push(DnType::CommonName, format!("Ferry CA ({trust_domain})"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![uri_san(&format!("{SPIFFE_PREFIX}{trust_domain}"))?];
        set_validity(&mut params, CA_VALIDITY)?;
        let cert = params
            .self_signed(&key)
            .map_err(CertError::generate("create the CA certificate"))?;
        let ca_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::from_ca_cert_der(cert.der(), key)
            .map_err(CertError::generate("use the new CA certificate"))?;

        create_dir(dir)?;
        write_new(&key_path, &key_pem, true)?;
        if let Err(e) = write_new(&cert_path, &ca_pem, false) {
            // Without ca.pem the key is useless and would block a retry.
            let _ = std::fs::remove_file(&key_path);
            return Err(e);
        }
        Ok(CertAuthority {
            issuer,
            ca_pem,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<CertAuthority, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let ca_pem = read_pem(&cert_path)?;
        let key_pem = read_pem(&key_path)?;
        let what = format!("{}", cert_path.display());

        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            CertError::InvalidPem {
                what: format!("CA certificate {what}"),
                reason: format!("no PEM certificate found ({e})"),
            }
        })?;
        let trust_domain = ca_trust_domain(&der, &what)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::InvalidPem {
            what: format!("CA key {}", key_path.display()),
            reason: e.to_string(),
        })?;
        if spki_key_bytes(&der, &what)? != key.public_key_raw() {
            return Err(CertError::KeyMismatch {
                what: format!("{} and {}", cert_path.display(), key_path.display()),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| CertError::InvalidCert {
            what,
            reason: e.to_string(),
        })?;
        Ok(CertAuthority {
            issuer,
            ca_pem,
            trust_domain,
        })
    }

    /// The trust domain this CA issues identities in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA certificate, PEM-encoded (distribute it as the trust root).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Issues a server+client certificate for coordinator `id` with URI SAN
    /// `spiffe://<td>/coordinator/<id>` plus each of `sans` as IP or DNS SAN.
    pub fn issue_coordinator(&self, id: u64, sans: &[String]) -> Result<CertifiedKey, CertError> {
        self.issue_coordinator_for(id, sans, COORDINATOR_VALIDITY)
    }

    /// [`CertAuthority::issue_coordinator`], valid for `validity` (a member
    /// renewing its own certificate).
    pub fn issue_coordinator_for(
        &self,
        id: u64,
        sans: &[String],
        validity: Duration,
    ) -> Result<CertifiedKey, CertError> {
        let identity = Identity::new(
            &self.trust_domain,
            IdentityKind::Coordinator,
            &id.to_string(),
        )?;
        let params = leaf_params(&identity, sans, &SERVER_AND_CLIENT, validity)?;
        self.issue_with_new_key(&params)
    }

    /// Issues a client certificate for a person, URI SAN
    /// `spiffe://<td>/operator/<name>`, valid for [`OPERATOR_VALIDITY`].
    pub fn issue_operator(&self, name: &str) -> Result<CertifiedKey, CertError> {
        self.issue_operator_for(name, OPERATOR_VALIDITY)
    }

    /// [`CertAuthority::issue_operator`], valid for `validity`.
    pub fn issue_operator_for(
        &self,
        name: &str,
        validity: Duration,
    ) -> Result<CertifiedKey, CertError> {
        self.issue_with_new_key(&self.operator_params(name, validity)?)
    }

    /// Signs a renewal request of operator `name` (the caller proved it holds
    /// a valid certificate of that name): a client certificate for the CSR's
    /// key, valid for `validity`.
    pub fn sign_operator_csr(
        &self,
        csr_pem: &str,
        name: &str,
        validity: Duration,
    ) -> Result<String, CertError> {
        self.sign_csr(csr_pem, &self.operator_params(name, validity)?)
    }

    /// Issues a new certificate and key for the identity and host names of
    /// `cert_pem` (a coordinator's or an operator's), with its kind's default
    /// lifetime: the offline renewal path for whoever holds the CA key.
    /// Agents renew their own over their session, so they are refused here.
    pub fn renew(&self, cert_pem: &str) -> Result<CertifiedKey, CertError> {
        let facts = crate::CertFacts::from_pem(cert_pem)?;
        let id = facts.identity;
        if id.trust_domain != self.trust_domain {
            return Err(CertError::InvalidCert {
                what: id.uri(),
                reason: format!(
                    "it belongs to trust domain `{}`, this CA issues for `{}`",
                    id.trust_domain, self.trust_domain
                ),
            });
        }
        match (id.kind, id.coordinator_id()) {
            (IdentityKind::Coordinator, Some(member)) => {
                self.issue_coordinator(member, &facts.hosts)
            }
            (IdentityKind::Operator, _) => self.issue_operator(&id.name),
            _ => Err(CertError::InvalidCert {
                what: id.uri(),
                reason: "agents renew their own certificates over their session; \
                         only coordinator and operator certificates are renewed here"
                    .to_string(),
            }),
        }
    }

    /// Signs an agent's PEM CSR after verifying its signature, valid for
    /// [`AGENT_VALIDITY`]; see [`CertAuthority::sign_agent_csr_for`].
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        name: &str,
        sans: &[String],
    ) -> Result<String, CertError> {
        self.sign_agent_csr_for(csr_pem, name, sans, AGENT_VALIDITY)
    }

    /// Signs an agent's PEM CSR after verifying its signature. Only the CSR's
    /// public key is used: the certificate gets URI SAN
    /// `spiffe://<td>/agent/<name>` plus `sans`, whatever the CSR asked for,
    /// and is usable as TLS client certificate and for Ferry's agent-peer
    /// purpose (not serverAuth) for `validity`. A host that
    /// [`agent_host_refusal`] refuses is refused; the caller refuses its
    /// coordinators' names.
    pub fn sign_agent_csr_for(
        &self,
        csr_pem: &str,
        name: &str,
        sans: &[String],
        validity: Duration,
    ) -> Result<String, CertError> {
        crate::identity::validate_agent_name(name)?;
        // The certificate is valid for server use (the agent's artifact
        // server), so it names that one host and nothing the agent chooses
        // beyond it: never a list that could include a coordinator's address.
        if sans.len() > 1 {
            return Err(CertError::InvalidSan {
                san: crate::identity::clip(&sans.join(",")),
                reason: "an agent certificate names one host only: its artifact server's \
                         (--advertise)"
                    .to_string(),
            });
        }
        for san in sans {
            if let Some(reason) = agent_host_refusal(san) {
                return Err(CertError::InvalidSan {
                    san: crate::identity::clip(san),
                    reason: format!(
                        "{reason}; an agent certificate must not name the local machine (an \
                         agent advertised on loopback asks for no host name)"
                    ),
                });
            }
        }
        let identity = Identity::new(&self.trust_domain, IdentityKind::Agent, name)?;
        let mut params = leaf_params(&identity, sans, &[], validity)?;
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 37],
            AGENT_EKU_EXTENSION.to_vec(),
        )];
        self.sign_csr(csr_pem, &params)
    }

    /// Signs `params` for the public key of a PEM CSR whose signature verifies.
    fn sign_csr(&self, csr_pem: &str, params: &CertificateParams) -> Result<String, CertError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CertError::InvalidCsr {
                reason: match e {
                    rcgen::Error::InvalidCertificationRequestSignature => {
                        "its signature does not verify; the agent must sign the request with its own key".to_string()
                    }
                    rcgen::Error::CouldNotParseCertificationRequest => {
                        "it is not a PEM PKCS#10 certificate request".to_string()
                    }
                    other => other.to_string(),
                },
            }
        })?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CertError::generate("sign the certificate"))?;
        Ok(cert.pem())
    }

    /// A client certificate's parameters for operator `name`.
    fn operator_params(
        &self,
        name: &str,
        validity: Duration,
    ) -> Result<CertificateParams, CertError> {
        let identity = Identity::new(&self.trust_domain, IdentityKind::Operator, name)?;
        leaf_params(
            &identity,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }

    fn issue_with_new_key(&self, params: &CertificateParams) -> Result<CertifiedKey, CertError> {
        let key = KeyPair::generate().map_err(CertError::generate("generate a key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CertError::generate("sign the certificate"))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Makes a fresh key pair and a CSR for agent `name`; returns
/// `(csr_pem, key_pem)`. The key never leaves the caller.
pub fn agent_csr(name: &str) -> Result<(String, String), CertError> {
    crate::identity::validate_agent_name(name)?;
    csr(&format!("ferry agent {name}"))
}

/// Makes a fresh key pair and a CSR to renew a certificate (the CA decides
/// the identity from the caller's current certificate, not from the CSR);
/// returns `(csr_pem, key_pem)`.
pub fn renewal_csr() -> Result<(String, String), CertError> {
    csr("ferry certificate renewal")
}

fn csr(common_name: &str) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(CertError::generate("generate a key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(CertError::generate(
            "create the certificate signing request",
        ))?;
    Ok((csr, key.serialize_pem()))
}

const SERVER_AND_CLIENT: [ExtendedKeyUsagePurpose; 2] = [
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];

fn leaf_params(
    identity: &Identity,
    sans: &[String],
    ekus: &[ExtendedKeyUsagePurpose],
    validity: Duration,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.uri());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = ekus.to_vec();
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = std::iter::once(uri_san(&identity.uri()))
        .chain(sans.iter().map(|s| host_san(s)))
        .collect::<Result<_, _>>()?;
    set_validity(&mut params, validity)?;
    Ok(params)
}

/// An IP SAN if `san` parses as an IP address, else a DNS SAN.
fn host_san(san: &str) -> Result<SanType, CertError> {
    let invalid = |reason: String| CertError::InvalidSan {
        san: crate::identity::clip(san),
        reason,
    };
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // Exactly the names rustls can later verify a server against.
    rustls_pki_types::DnsName::try_from(san)
        .map_err(|_| invalid("it is neither an IP address nor a valid DNS name".to_string()))?;
    Ia5String::try_from(san)
        .map(SanType::DnsName)
        .map_err(|e| invalid(e.to_string()))
}

fn uri_san(uri: &str) -> Result<SanType, CertError> {
    Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(|e| CertError::InvalidUri {
            uri: uri.to_string(),
            reason: e.to_string(),
        })
}

fn set_validity(params: &mut CertificateParams, validity: Duration) -> Result<(), CertError> {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE.min(validity / 10)).into();
    params.not_after = (now + validity).into();
    params.serial_number = Some(random_serial()?);
    Ok(())
}

/// A random, positive 128-bit serial number (RFC 5280 allows up to 20 bytes).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CertError::InvalidCert {
            what: "new certificate".to_string(),
            reason: "the system random number generator failed; retry".to_string(),
        })?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Recovers the trust domain from the CA certificate's `spiffe://<td>` SAN,
/// and checks that the certificate is a CA.
fn ca_trust_domain(der: &[u8], what: &str) -> Result<String, CertError> {
    let invalid = |reason: String| CertError::InvalidCert {
        what: what.to_string(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| invalid(format!("malformed basic constraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(invalid("it is not a CA certificate".to_string()));
    }
    let uris = crate::identity::spiffe_uris(der)?;
    let [uri] = uris.as_slice() else {
        return Err(invalid(
            "it has no single spiffe://<trust-domain> URI SAN; was it created by Ferry's CA init?"
                .to_string(),
        ));
    };
    let trust_domain = uri.strip_prefix(SPIFFE_PREFIX).unwrap_or_default();
    validate_trust_domain(trust_domain)?;
    Ok(trust_domain.to_string())
}

/// The raw subject public key bytes of a DER certificate.
pub(crate) fn spki_key_bytes(der: &[u8], what: &str) -> Result<Vec<u8>, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertError::InvalidCert {
            what: what.to_string(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}
