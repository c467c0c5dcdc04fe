//! The coordinator's [`HookSink`]: verified webhook pushes go to `ops`
//! (`ops/triggers.rs`), the same application layer the gRPC API uses.

use super::hooks::{HookAnswer, HookSink};
use super::webhook::GitPush;
use crate::ops::{OpResult, Ops};

impl HookSink for Ops {
    async fn webhook_secret(&self, pipeline: &str) -> OpResult<Vec<u8>> {
        Ops::webhook_secret(self, pipeline).await
    }

    async fn push(&self, pipeline: &str, delivery: &str, push: GitPush) -> OpResult<HookAnswer> {
        self.git_push(pipeline, delivery, push).await
    }
}
