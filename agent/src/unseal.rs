//! Opens an assignment's sealed secrets: the action's `secrets:` become
//! `secret_env`, each deploy host's credentials its `private_key` or
//! `tls_bundle`. Every secret was sealed to this agent's wrapping key by the
//! coordinator that dispatched it (it carries an ephemeral public key). One
//! that carries none was sealed under the cluster's secrets key, which agents
//! no longer hold or use: it is refused. Plain values exist only in this
//! agent's memory; nothing here writes them anywhere.

use ferry_certs::WrappingKey;
use ferry_proto as pb;

/// What this agent opens sealed secrets with.
pub struct Keys {
    /// Its own X25519 wrapping key (`wrapping.key`), for secrets the
    /// coordinator sealed to it.
    pub wrapping: Option<WrappingKey>,
}

fn open_one(keys: Option<&Keys>, s: &pb::internal::SealedSecret) -> Result<Vec<u8>, String> {
    if s.ephemeral_public_key.is_empty() {
        return Err(format!(
            "secret `{}` came sealed under the cluster's secrets key, which agents no longer \
             hold or use: the coordinator that sent it is older than this agent; upgrade every \
             coordinator",
            s.name
        ));
    }
    let Some(wrapping) = keys.and_then(|k| k.wrapping.as_ref()) else {
        return Err(format!(
            "secret `{}` was sealed to this agent's wrapping key, but the agent has no `{}` in \
             its state dir; remove the agent (`ferry agents remove`), wipe its state dir and \
             enroll it again",
            s.name,
            ferry_certs::WRAPPING_KEY_FILE
        ));
    };
    wrapping
        .open(&s.name, &s.ephemeral_public_key, &s.nonce, &s.ciphertext)
        .map_err(|e| e.to_string())
}

/// The assignment with its secrets opened; why not, if they cannot be.
pub fn open(
    a: &pb::internal::Assignment,
    keys: Option<&Keys>,
) -> Result<pb::internal::Assignment, String> {
    let mut opened = a.clone();
    for (var, sealed) in std::mem::take(&mut opened.sealed_env) {
        opened.secret_env.insert(var, open_one(keys, &sealed)?);
    }
    if let Some(d) = opened.deploy.as_mut() {
        for h in &mut d.hosts {
            if let Some(sealed) = h.sealed_credentials.take() {
                let value = open_one(keys, &sealed)?;
                if h.kind == "docker" {
                    h.tls_bundle = value;
                } else {
                    h.private_key = value;
                }
            }
        }
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// An assignment with one env secret and one SSH host key, sealed by `seal`.
    fn assignment(
        seal: impl Fn(&str, &[u8]) -> Result<pb::internal::SealedSecret, Box<dyn std::error::Error>>,
    ) -> Result<pb::internal::Assignment, Box<dyn std::error::Error>> {
        let mut a = pb::internal::Assignment::default();
        a.sealed_env.insert("TOKEN".into(), seal("tok", b"v1")?);
        a.deploy = Some(pb::internal::DeploySpec {
            hosts: vec![pb::internal::DeployHost {
                kind: "ssh".into(),
                sealed_credentials: Some(seal("key", b"PEM")?),
                ..Default::default()
            }],
            ..Default::default()
        });
        Ok(a)
    }

    fn assert_opened(opened: &pb::internal::Assignment) -> TestResult {
        assert_eq!(
            opened.secret_env.get("TOKEN").map(Vec::as_slice),
            Some(&b"v1"[..])
        );
        assert!(opened.sealed_env.is_empty());
        let host = &opened.deploy.as_ref().ok_or("deploy")?.hosts[0];
        assert_eq!(host.private_key, b"PEM");
        assert!(host.sealed_credentials.is_none());
        Ok(())
    }

    #[test]
    fn secrets_sealed_to_the_agent_open_with_its_wrapping_key() -> TestResult {
        let agent = WrappingKey::generate()?;
        let public = agent.public_bytes();
        let a = assignment(|name, value| {
            let w = ferry_certs::seal_to(&public, name, value)?;
            Ok(pb::internal::SealedSecret {
                name: name.into(),
                nonce: w.nonce.to_vec(),
                ciphertext: w.ciphertext,
                ephemeral_public_key: w.ephemeral_public.to_vec(),
            })
        })?;
        let keys = Keys {
            wrapping: Some(agent),
        };
        assert_opened(&open(&a, Some(&keys))?)?;
        // Another agent's key, or none: a clear refusal.
        let other = Keys {
            wrapping: Some(WrappingKey::generate()?),
        };
        assert!(open(&a, Some(&other)).is_err_and(|e| e.contains("another agent")));
        assert!(
            open(&a, Some(&Keys { wrapping: None })).is_err_and(|e| e.contains("enroll it again"))
        );
        assert!(open(&a, None).is_err_and(|e| e.contains("wrapping.key")));
        Ok(())
    }

    /// What a coordinator older than this agent might still send: sealed
    /// under the cluster's key. Agents hold no such key any more: refused,
    /// saying why.
    #[test]
    fn secrets_under_the_cluster_key_are_refused() -> TestResult {
        let sealer = ferry_certs::SecretBox::new(&[3u8; 32])?;
        let a = assignment(|name, value| {
            let (nonce, ciphertext) = sealer.seal(name, value)?;
            Ok(pb::internal::SealedSecret {
                name: name.into(),
                nonce,
                ciphertext,
                ..Default::default()
            })
        })?;
        let keys = Keys {
            wrapping: Some(WrappingKey::generate()?),
        };
        assert!(
            open(&a, Some(&keys))
                .is_err_and(|e| e.contains("cluster's secrets key") && e.contains("upgrade"))
        );
        // Nothing sealed: nothing needed.
        assert!(open(&pb::internal::Assignment::default(), None).is_ok());
        Ok(())
    }
}
