//! Opens an assignment's sealed secrets: the action's `secrets:` become
//! `secret_env`, each deploy host's credentials its `private_key` or
//! `tls_bundle`. A secret that carries an ephemeral public key was sealed to
//! this agent's wrapping key by the coordinator that dispatched it; one that
//! carries none is sealed under the cluster's secrets key, which only agents
//! enrolled before wrapping keys hold. Plain values exist only in this
//! agent's memory; nothing here writes them anywhere.

use ferry_certs::{SecretBox, WrappingKey};
use ferry_proto as pb;

/// What this agent opens sealed secrets with.
pub struct Keys {
    /// Its own X25519 wrapping key (`wrapping.key`), for secrets the
    /// coordinator sealed to it.
    pub wrapping: Option<WrappingKey>,
    /// Its copy of the cluster's secrets key (`secrets.key`): only agents
    /// enrolled before wrapping keys have one.
    pub cluster: Option<SecretBox>,
}

fn open_one(keys: Option<&Keys>, s: &pb::internal::SealedSecret) -> Result<Vec<u8>, String> {
    if s.ephemeral_public_key.is_empty() {
        let Some(cluster) = keys.and_then(|k| k.cluster.as_ref()) else {
            return Err(format!(
                "secret `{}` came sealed under the cluster's secrets key, which this agent does \
                 not hold (agents that enrolled with a wrapping key never do): the coordinator \
                 that sent it did not seal it to this agent; upgrade every coordinator, or \
                 enroll the agent again",
                s.name
            ));
        };
        cluster
            .open(&s.name, &s.nonce, &s.ciphertext)
            .map_err(|e| e.to_string())
    } else {
        let Some(wrapping) = keys.and_then(|k| k.wrapping.as_ref()) else {
            return Err(format!(
                "secret `{}` was sealed to this agent's wrapping key, but the agent has no \
                 `{}` in its state dir; enroll it again",
                s.name,
                ferry_certs::WRAPPING_KEY_FILE
            ));
        };
        wrapping
            .open(&s.name, &s.ephemeral_public_key, &s.nonce, &s.ciphertext)
            .map_err(|e| e.to_string())
    }
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
            cluster: None,
        };
        assert_opened(&open(&a, Some(&keys))?)?;
        // Another agent's key, or none: a clear refusal.
        let other = Keys {
            wrapping: Some(WrappingKey::generate()?),
            cluster: Some(SecretBox::new(&[3u8; 32])?),
        };
        assert!(open(&a, Some(&other)).is_err_and(|e| e.contains("another agent")));
        let cluster_only = Keys {
            wrapping: None,
            cluster: Some(SecretBox::new(&[3u8; 32])?),
        };
        assert!(open(&a, Some(&cluster_only)).is_err_and(|e| e.contains("enroll it again")));
        assert!(open(&a, None).is_err_and(|e| e.contains("wrapping.key")));
        Ok(())
    }

    #[test]
    fn secrets_under_the_cluster_key_open_for_agents_that_hold_it() -> TestResult {
        let sealer = SecretBox::new(&[3u8; 32])?;
        let a = assignment(|name, value| {
            let (nonce, ciphertext) = sealer.seal(name, value)?;
            Ok(pb::internal::SealedSecret {
                name: name.into(),
                nonce,
                ciphertext,
                ..Default::default()
            })
        })?;
        // An agent enrolled before wrapping keys, or through a coordinator
        // older than them (which sent it the cluster key all the same).
        for wrapping in [None, Some(WrappingKey::generate()?)] {
            let keys = Keys {
                wrapping,
                cluster: Some(SecretBox::new(&[3u8; 32])?),
            };
            assert_opened(&open(&a, Some(&keys))?)?;
        }
        // An agent with only a wrapping key, or no key, or another cluster's
        // key: a clear refusal.
        let wrapping_only = Keys {
            wrapping: Some(WrappingKey::generate()?),
            cluster: None,
        };
        assert!(
            open(&a, Some(&wrapping_only))
                .is_err_and(|e| e.contains("did not seal it to this agent"))
        );
        assert!(open(&a, None).is_err_and(|e| e.contains("does not hold")));
        let other = Keys {
            wrapping: None,
            cluster: Some(SecretBox::new(&[4u8; 32])?),
        };
        assert!(open(&a, Some(&other)).is_err());
        // Nothing sealed: nothing needed.
        assert!(open(&pb::internal::Assignment::default(), None).is_ok());
        Ok(())
    }
}
