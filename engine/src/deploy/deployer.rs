//! The deployer as an [`ActionRunner`]: a deploy action's one input is the
//! artifact to roll out; its `ferry-deploy.yml` says what to install and
//! which hooks to run, and [`super::run`] does the rest. A deployment is not
//! interrupted half way by a stale attempt or the agent shutting down: it
//! finishes (and rolls back) bounded by the action's timeout. Only a
//! person's stop (`ferry stop --abandon`) ends it early: after the host step
//! in progress, rolling back every host it changed.

use futures::future::BoxFuture;

use crate::runner::{ActionError, ActionRunner, Attempt, Outcome};
use crate::store::Store;
use ferry_pipeline::mask::Masker;

/// Runs deploy actions from artifacts in `store`.
pub struct Deployer {
    store: Store,
}

impl Deployer {
    pub fn new(store: Store) -> Deployer {
        Deployer { store }
    }

    async fn deploy(&self, attempt: Attempt<'_>) -> Outcome {
        let spec = attempt.spec;
        let Some(deploy) = &spec.deploy else {
            return Outcome::failed(ActionError::Input(
                "this action has no deployment to run".into(),
            ));
        };
        if let Some(problem) = &deploy.problem {
            return Outcome::failed(ActionError::Input(problem.clone()));
        }
        let Some((input, path)) = attempt
            .inputs
            .first()
            .and_then(|i| self.store.path(&i.digest).map(|p| (i, p)))
        else {
            return Outcome::failed(ActionError::Input(
                "the artifact to deploy is not on this agent".into(),
            ));
        };
        let revision = match super::read_revision_spec(&path) {
            Ok(r) => r,
            Err(e) => return Outcome::failed(ActionError::Input(e)),
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // The FERRY_* variables build and test commands get, then the
        // action's env and secrets.
        let env = spec
            .context
            .ferry_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .chain(
                spec.env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            )
            .chain(attempt.secrets.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        // The report (stored in the cluster's state) masks what the log does.
        let masker = Masker::new(
            attempt
                .secrets
                .values()
                .cloned()
                .chain(deploy.credentials()),
        );
        let plan = super::Plan {
            spec: deploy,
            pipeline: &spec.context.pipeline,
            revision: &revision,
            artifact: &path,
            artifact_size: size,
            digest: &input.digest,
            env,
            masker: &masker,
            timeout: spec.timeout,
            cancel: attempt.cancel,
        };
        let finished = super::run(plan, attempt.log).await;
        Outcome {
            result: if finished.success {
                Ok(Vec::new())
            } else {
                Err(ActionError::Deploy(finished.summary))
            },
            deployment: Some(finished.report),
            variables: Default::default(),
            failure_outputs: Vec::new(),
            tests: None,
            caches: Vec::new(),
        }
    }
}

impl ActionRunner for Deployer {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deploy(attempt))
    }
}
