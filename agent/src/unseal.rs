//! Opens an assignment's sealed secrets with the agent's copy of the
//! cluster's secrets key (received at enrollment): the action's `secrets:`
//! become `secret_env`, each deploy host's credentials its `private_key` or
//! `tls_bundle`. Plain values exist only in this agent's memory.

use ferry_certs::SecretBox;
use ferry_proto as pb;

fn open_one(sealer: &SecretBox, s: &pb::SealedSecret) -> Result<Vec<u8>, String> {
    sealer
        .open(&s.name, &s.nonce, &s.ciphertext)
        .map_err(|e| e.to_string())
}

/// The assignment with its secrets opened; why not, if they cannot be.
pub fn open(a: &pb::Assignment, sealer: Option<&SecretBox>) -> Result<pb::Assignment, String> {
    let mut opened = a.clone();
    let hosts_sealed = a
        .deploy
        .as_ref()
        .is_some_and(|d| d.hosts.iter().any(|h| h.sealed_credentials.is_some()));
    if a.sealed_env.is_empty() && !hosts_sealed {
        return Ok(opened);
    }
    let Some(sealer) = sealer else {
        return Err(
            "this agent has no copy of the cluster's secrets key, so it cannot open the secrets \
             this action names; enroll it again (agents receive the key at enrollment)"
                .into(),
        );
    };
    for (var, sealed) in std::mem::take(&mut opened.sealed_env) {
        opened.secret_env.insert(var, open_one(sealer, &sealed)?);
    }
    if let Some(d) = opened.deploy.as_mut() {
        for h in &mut d.hosts {
            if let Some(sealed) = h.sealed_credentials.take() {
                let value = open_one(sealer, &sealed)?;
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

    #[test]
    fn sealed_values_are_opened_into_the_plain_fields() -> Result<(), Box<dyn std::error::Error>> {
        let sealer = SecretBox::new(&[3u8; 32])?;
        let seal =
            |name: &str, value: &[u8]| -> Result<pb::SealedSecret, Box<dyn std::error::Error>> {
                let (nonce, ciphertext) = sealer.seal(name, value)?;
                Ok(pb::SealedSecret {
                    name: name.into(),
                    nonce,
                    ciphertext,
                })
            };
        let mut a = pb::Assignment::default();
        a.sealed_env.insert("TOKEN".into(), seal("tok", b"v1")?);
        a.deploy = Some(pb::DeploySpec {
            hosts: vec![pb::DeployHost {
                kind: "ssh".into(),
                sealed_credentials: Some(seal("key", b"PEM")?),
                ..Default::default()
            }],
            ..Default::default()
        });
        let opened = open(&a, Some(&sealer))?;
        assert_eq!(
            opened.secret_env.get("TOKEN").map(Vec::as_slice),
            Some(&b"v1"[..])
        );
        assert!(opened.sealed_env.is_empty());
        let host = &opened.deploy.as_ref().ok_or("deploy")?.hosts[0];
        assert_eq!(host.private_key, b"PEM");
        assert!(host.sealed_credentials.is_none());
        // No key, or another cluster's key: a clear refusal.
        assert!(open(&a, None).is_err_and(|e| e.contains("enroll it again")));
        let other = SecretBox::new(&[4u8; 32])?;
        assert!(open(&a, Some(&other)).is_err());
        // Nothing sealed: nothing needed.
        assert!(open(&pb::Assignment::default(), None).is_ok());
        Ok(())
    }
}
