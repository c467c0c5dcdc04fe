//! Who owns what a deployment touches on a Docker Engine target. The
//! repository writes `ferry-deploy.yml`, so the container it names and the
//! host ports it publishes are claims, not facts: a staging deployment must
//! never replace, stop or take a port from production's container while
//! production's approval is still waiting. Every container Ferry makes
//! carries the labels below; a container whose labels name another
//! environment, pipeline or host — or that has none (nobody's, or someone
//! else's) — is refused with a clear error before anything changes.
//!
//! Pure rules over labels and port bindings; `docker.rs` reads them from
//! the engine.

use std::collections::HashMap;

/// The release a container runs.
pub const RELEASE_LABEL: &str = "ferry.release";
/// The environment that deployed it.
pub const ENVIRONMENT_LABEL: &str = "ferry.environment";
/// The pipeline that deployed it.
pub const PIPELINE_LABEL: &str = "ferry.pipeline";
/// The environment's host (a Docker Engine) it was deployed as.
pub const HOST_LABEL: &str = "ferry.host";

/// The deployment asking: environment, pipeline and host.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub environment: &'a str,
    pub pipeline: &'a str,
    pub host: &'a str,
}

impl Owner<'_> {
    /// The labels a container made by this deployment of `release` carries.
    pub fn labels(&self, release: &str) -> HashMap<String, String> {
        HashMap::from([
            (RELEASE_LABEL.to_string(), release.to_string()),
            (ENVIRONMENT_LABEL.to_string(), self.environment.to_string()),
            (PIPELINE_LABEL.to_string(), self.pipeline.to_string()),
            (HOST_LABEL.to_string(), self.host.to_string()),
        ])
    }

    /// Whether a container with `labels`, called `name`, is this
    /// deployment's to replace. Containers made by a Ferry that did not yet
    /// label the pipeline and host are adopted when their environment
    /// matches (`Ok(true)`: the caller says so in the log).
    pub fn check(
        &self,
        name: &str,
        labels: Option<&HashMap<String, String>>,
    ) -> Result<bool, String> {
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        let Some(environment) = label(ENVIRONMENT_LABEL) else {
            return Err(format!(
                "container `{name}` was not made by Ferry (it has no `{ENVIRONMENT_LABEL}` label): \
                 refusing to replace it; remove or rename it, or name another container in \
                 ferry-deploy.yml"
            ));
        };
        if environment != self.environment {
            return Err(format!(
                "container `{name}` belongs to environment `{}`, not `{}`: refusing to replace it \
                 (ferry-deploy.yml must name a container of this environment's own)",
                shown(environment),
                self.environment
            ));
        }
        let pipeline = label(PIPELINE_LABEL);
        if let Some(p) = pipeline.filter(|p| *p != self.pipeline) {
            return Err(format!(
                "container `{name}` belongs to pipeline `{}`, not `{}`: refusing to replace it",
                shown(p),
                self.pipeline
            ));
        }
        let host = label(HOST_LABEL);
        if let Some(h) = host.filter(|h| *h != self.host) {
            return Err(format!(
                "container `{name}` belongs to host `{}` of environment `{}`, not `{}`: \
                 refusing to replace it",
                shown(h),
                self.environment,
                self.host
            ));
        }
        Ok(pipeline.is_none() || host.is_none())
    }
}

/// A label value as it may appear in an error: someone else wrote it.
fn shown(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A container on the engine and the host ports it publishes (or would
/// publish when started).
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub ports: Vec<u16>,
}

/// The first host port of `wanted` that a container other than `own`
/// (the deployment's own container names) publishes, with who holds it.
pub fn port_taken(wanted: &[u16], own: &[&str], others: &[Publisher]) -> Option<String> {
    for p in others {
        if own.contains(&p.name.as_str()) {
            continue;
        }
        if let Some(port) = wanted.iter().find(|w| p.ports.contains(w)) {
            let whose = match p.labels.get(ENVIRONMENT_LABEL) {
                Some(env) => format!("environment `{}`", shown(env)),
                None => "no Ferry environment".to_string(),
            };
            return Some(format!(
                "host port {port} is published by container `{}` ({whose}): refusing to take it \
                 (ferry-deploy.yml must publish ports of this environment's own)",
                shown(&p.name)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGING: Owner = Owner {
        environment: "staging",
        pipeline: "shop",
        host: "engine1",
    };

    #[test]
    fn only_the_same_environment_pipeline_and_host_may_replace_a_container() {
        let ours = STAGING.labels("e1");
        assert_eq!(STAGING.check("shop", Some(&ours)), Ok(false));
        let production = Owner {
            environment: "production",
            ..STAGING
        };
        let err = STAGING
            .check("shop", Some(&production.labels("e0")))
            .expect_err("another environment's container");
        assert!(err.contains("belongs to environment `production`"), "{err}");
        let other_pipeline = Owner {
            pipeline: "blog",
            ..STAGING
        };
        assert!(
            STAGING
                .check("shop", Some(&other_pipeline.labels("e0")))
                .is_err()
        );
        let other_host = Owner {
            host: "engine2",
            ..STAGING
        };
        assert!(
            STAGING
                .check("shop", Some(&other_host.labels("e0")))
                .is_err()
        );
        // Nobody's container (made by hand, or by another tool) is refused.
        let err = STAGING.check("db", None).expect_err("unlabelled");
        assert!(err.contains("not made by Ferry"), "{err}");
        let foreign = HashMap::from([("com.example".to_string(), "x".to_string())]);
        assert!(STAGING.check("db", Some(&foreign)).is_err());
        // An older Ferry's container of this environment is adopted.
        let old = HashMap::from([
            (RELEASE_LABEL.to_string(), "e0".to_string()),
            (ENVIRONMENT_LABEL.to_string(), "staging".to_string()),
        ]);
        assert_eq!(STAGING.check("shop", Some(&old)), Ok(true));
        // A hostile label value is shown shortened and without control characters.
        let evil = HashMap::from([(
            ENVIRONMENT_LABEL.to_string(),
            format!("x\n{}", "y".repeat(500)),
        )]);
        let err = STAGING.check("shop", Some(&evil)).expect_err("evil");
        assert!(!err.contains('\n') && err.len() < 400, "{err}");
    }

    #[test]
    fn a_port_of_another_container_is_not_taken() {
        let prod = Publisher {
            name: "shop-prod".into(),
            labels: Owner {
                environment: "production",
                ..STAGING
            }
            .labels("e0"),
            ports: vec![8080],
        };
        let mine = Publisher {
            name: "shop.ferry-previous".into(),
            labels: STAGING.labels("e0"),
            ports: vec![9090],
        };
        let own = ["shop", "shop.ferry-previous"];
        let all = [prod, mine];
        let err = port_taken(&[9090, 8080], &own, &all).expect("taken");
        assert!(
            err.contains("host port 8080") && err.contains("`production`"),
            "{err}"
        );
        assert_eq!(port_taken(&[9090, 7070], &own, &all), None);
    }
}
