//! SSH to deployment targets (russh): connect with a timeout, accept the
//! server only if its host key is the one the environment pins (a public key
//! or a SHA256 fingerprint) — an unknown or changed key is refused, never
//! learned — authenticate with the private key from a secret, and run
//! commands, streaming their output and returning the exit status. An
//! unusable key is described in words of Ferry's own ([`key_problem`]),
//! never by the parser's message, which can quote lines of the key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use thiserror::Error;

/// Ciphers offered, fastest first on machines with AES instructions.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

/// The host key an environment pins for a host.
#[derive(Debug, Clone)]
pub enum Pinned {
    /// An OpenSSH public key line (`ssh-ed25519 AAAA...`).
    Key(String),
    /// `SHA256:<base64>` as `ssh-keygen -l` prints it.
    Fingerprint(String),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pinned: Pinned,
    /// The private key (OpenSSH PEM), from a secret.
    pub private_key: String,
}

#[derive(Debug, Error)]
pub enum SshError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error(
        "host key of {addr} is not the pinned one (expected {expected}, the host presented {presented}); \
         refusing to connect — if the host was rebuilt on purpose, update the environment"
    )]
    HostKeyMismatch {
        addr: String,
        expected: String,
        presented: String,
    },
    #[error("the pinned host key for {addr} is invalid: {reason}")]
    BadPin { addr: String, reason: String },
    #[error("the private key for {addr} is invalid: {reason}")]
    BadKey { addr: String, reason: String },
    #[error("{addr} refused the key for user `{user}`")]
    AuthRefused { addr: String, user: String },
    #[error("ssh to {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

struct Verifier {
    pinned: Pinned,
    /// The fingerprint the server presented, for the error message.
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // Host certificates are not part of the environment format (yet).
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        *self.presented.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint.clone());
        Ok(match &self.pinned {
            Pinned::Fingerprint(f) => *f == fingerprint,
            Pinned::Key(line) => {
                PublicKey::from_openssh(line).is_ok_and(|p| p.key_data() == key.key_data())
            }
        })
    }
}

/// An authenticated SSH connection to one target.
pub struct Connection {
    handle: Handle<Verifier>,
    addr: String,
}

fn addr_of(t: &Target) -> String {
    if t.host.contains(':') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    }
}

/// What is wrong with a private key that does not decode, in words that
/// quote none of it: the parsers' own messages can (ssh-key's PuTTY reader
/// puts the offending line of the key in its error), and this reason ends
/// up in the deployment's report and log, stored and shown to viewers.
fn key_problem(e: &russh::keys::Error) -> &'static str {
    use russh::keys::Error as E;
    match e {
        E::KeyIsEncrypted => "it is encrypted with a passphrase; Ferry needs the key without one",
        E::CouldNotReadKey => {
            "it is not a private key in OpenSSH or PEM format (-----BEGIN OPENSSH PRIVATE KEY-----)"
        }
        E::UnsupportedKeyType { .. } | E::UnknownAlgorithm(_) => "its key type is not supported",
        _ => "the key data is corrupt or in a format Ferry cannot read",
    }
}

/// Connects within `timeout`, checks the pinned host key, and authenticates.
pub async fn connect(t: &Target, timeout: Duration) -> Result<Connection, SshError> {
    let addr = addr_of(t);
    let expected = match &t.pinned {
        Pinned::Fingerprint(f) => f.clone(),
        Pinned::Key(line) => PublicKey::from_openssh(line)
            .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
            .map_err(|e| SshError::BadPin {
                addr: addr.clone(),
                reason: e.to_string(),
            })?,
    };
    let key =
        russh::keys::decode_secret_key(&t.private_key, None).map_err(|e| SshError::BadKey {
            addr: addr.clone(),
            reason: key_problem(&e).to_string(),
        })?;
    let presented = Arc::new(Mutex::new(None));
    let verifier = Verifier {
        pinned: t.pinned.clone(),
        presented: presented.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(60)),
        // Every step is a short request/response exchange: Nagle's delay
        // would add tens of milliseconds to each.
        nodelay: true,
        preferred: russh::Preferred {
            // AES-GCM runs on the CPU's AES instructions: several times the
            // throughput of ChaCha20 for artifact uploads.
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    });
    let connecting = client::connect(config, (t.host.as_str(), t.port), verifier);
    let mut handle = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            return Err(SshError::Unreachable {
                addr,
                reason: format!("no answer within {timeout:?}"),
            });
        }
        Ok(Err(russh::Error::UnknownKey)) => {
            let presented = presented
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(SshError::HostKeyMismatch {
                addr,
                expected,
                presented,
            });
        }
        Ok(Err(russh::Error::IO(e))) => {
            return Err(SshError::Unreachable {
                addr,
                reason: e.to_string(),
            });
        }
        Ok(Err(e)) => {
            return Err(SshError::Protocol {
                addr,
                reason: e.to_string(),
            });
        }
        Ok(Ok(h)) => h,
    };
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let auth = handle
        .authenticate_publickey(
            t.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(|e| SshError::Protocol {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    if !auth.success() {
        return Err(SshError::AuthRefused {
            addr,
            user: t.user.clone(),
        });
    }
    Ok(Connection { handle, addr })
}

impl Connection {
    /// Runs `command`, feeding `stdin` (if any) and passing stdout and stderr
    /// to `out` as they arrive; returns the exit status.
    pub async fn exec(
        &mut self,
        command: &str,
        stdin: Option<&[u8]>,
        out: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u32, SshError> {
        self.exec_reading(command, stdin, out).await
    }

    /// Like [`Connection::exec`], streaming standard input from `stdin`
    /// (a file, say) instead of holding it in memory.
    pub async fn exec_reading<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        command: &str,
        stdin: Option<R>,
        out: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u32, SshError> {
        let proto = |e: russh::Error| SshError::Protocol {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let mut channel = self.handle.channel_open_session().await.map_err(proto)?;
        channel.exec(true, command).await.map_err(proto)?;
        if let Some(data) = stdin {
            channel.data(data).await.map_err(proto)?;
        }
        channel.eof().await.map_err(proto)?;
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out(&data),
                ChannelMsg::ExtendedData { data, .. } => out(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        status.ok_or_else(|| SshError::Protocol {
            addr: self.addr.clone(),
            reason: format!("`{command}` ended without an exit status"),
        })
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target whose private key (a secret's value) is `key`.
    fn target(key: &str) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 9,
            user: "deploy".into(),
            pinned: Pinned::Fingerprint("SHA256:x".into()),
            private_key: key.into(),
        }
    }

    #[tokio::test]
    async fn a_bad_private_key_is_refused_without_quoting_it() {
        let marker = "hunter2-KEY-MATERIAL";
        for key in [
            format!("PuTTY-User-Key-File-3: ssh-ed25519\n{marker} without a colon\n"),
            format!(
                "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: c\nPublic-Lines: 1\n{marker}\n"
            ),
            format!("PuTTY-User-Key-File-3: {marker}\n"),
            format!("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: {marker}\n"),
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{marker}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{marker}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
            marker.to_string(),
        ] {
            let err = match connect(&target(&key), Duration::from_secs(1)).await {
                Err(e) => e,
                Ok(_) => panic!("a bad key was accepted"),
            };
            assert!(matches!(err, SshError::BadKey { .. }), "{err}");
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "the key leaked: {text}");
            assert!(
                text.starts_with("the private key for 127.0.0.1:9 is invalid: "),
                "{text}"
            );
        }
    }
}
