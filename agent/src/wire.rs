//! What the agent's edge converts that `ferry_proto::convert` cannot: the
//! engine's own types (an assignment's opened secrets, the outputs an
//! attempt stored) to and from the session's messages. The spec and the
//! deployment report go through `ferry_proto::convert`. This module does no
//! I/O.

use ferry_proto as pb;

use ferry_engine::runner::{Output, Secrets};

/// The assignment's secrets, once `crate::unseal` opened them.
pub fn secrets(a: &pb::internal::Assignment) -> Secrets {
    a.secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn outputs(outputs: Vec<Output>) -> Vec<pb::internal::OutputArtifact> {
    outputs
        .into_iter()
        .map(|o| pb::internal::OutputArtifact {
            name: o.name,
            digest: o.blob.digest,
            size: o.blob.size,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::store::Blob;

    #[test]
    fn secrets_and_outputs_cross_the_edge() {
        let a = pb::internal::Assignment {
            secret_env: [("TOKEN".to_string(), b"hunter2".to_vec())].into(),
            ..Default::default()
        };
        assert_eq!(
            secrets(&a).get("TOKEN").map(Vec::as_slice),
            Some(&b"hunter2"[..])
        );
        let out = outputs(vec![Output {
            name: "bin".into(),
            blob: Blob {
                digest: "sha256:00".into(),
                size: 3,
            },
        }]);
        assert_eq!(
            out,
            vec![pb::internal::OutputArtifact {
                name: "bin".into(),
                digest: "sha256:00".into(),
                size: 3
            }]
        );
    }
}
