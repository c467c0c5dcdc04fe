//! The coordinator's [`HookSink`]: verified webhook pushes go to `ops`
//! (`ops/triggers.rs`), the same application layer the gRPC API uses.

use ferry_pipeline::trigger::RefKind as PipelineRefKind;

use super::hooks::{HookAnswer, HookSink};
use super::webhook::{GitPush, RefKind};
use crate::ops::triggers::{Push, PushOutcome};
use crate::ops::{OpResult, Ops};

impl HookSink for Ops {
    async fn webhook_secret(&self, pipeline: &str) -> OpResult<Vec<u8>> {
        Ops::webhook_secret(self, pipeline).await
    }

    async fn push(&self, pipeline: &str, delivery: &str, push: GitPush) -> OpResult<HookAnswer> {
        let push = Push {
            kind: match push.kind {
                RefKind::Branch => PipelineRefKind::Branch,
                RefKind::Tag => PipelineRefKind::Tag,
            },
            name: push.name,
            after: push.after,
            before: push.before,
            deleted: push.deleted,
        };
        Ok(match self.git_push(pipeline, delivery, push).await? {
            PushOutcome::Started {
                execution,
                revision,
            } => HookAnswer::Started {
                execution,
                revision,
            },
            PushOutcome::AlreadyDelivered { execution } => {
                HookAnswer::AlreadyDelivered { execution }
            }
            PushOutcome::Ignored(why) => HookAnswer::Ignored(why),
        })
    }
}
