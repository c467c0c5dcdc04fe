//! Steering executions: `ferry stop`, `ferry retry` and `ferry transition
//! disable|enable`. Each prints one line saying what it did (JSON with
//! `-o json`); the coordinator checks the role and the execution's state.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, RetryArgs, StopArgs, TransitionCommand};
use crate::client;
use crate::output;

#[derive(Serialize)]
struct Done<'a> {
    pipeline: &'a str,
    done: &'a str,
}

fn report(format: Format, pipeline: &str, done: &str) -> Result<()> {
    match format {
        Format::Table => output::print(done),
        Format::Json => output::print_json(&Done { pipeline, done }),
    }
}

/// `ferry stop NAME --execution ID --reason TEXT [--abandon]`.
pub async fn stop(global: &GlobalArgs, args: &StopArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    api.executions
        .stop_execution(pb::StopExecutionRequest {
            request_id: String::new(),
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            reason: args.reason.clone(),
            abandon: args.abandon,
        })
        .await?;
    let how = if args.abandon {
        "stopped; running actions are cancelled"
    } else {
        "stopping; running actions finish first"
    };
    report(
        global.output,
        &args.name,
        &format!("execution {} {how}", args.execution),
    )
}

/// `ferry retry NAME --execution ID --stage STAGE [--failed-only | --all]`.
pub async fn retry(global: &GlobalArgs, args: &RetryArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    api.executions
        .retry_stage(pb::RetryStageRequest {
            request_id: String::new(),
            pipeline: args.name.clone(),
            execution_id: args.execution.clone(),
            stage: args.stage.clone(),
            all: args.all,
        })
        .await?;
    let which = if args.all {
        "every action"
    } else {
        "the actions that did not succeed"
    };
    report(
        global.output,
        &args.name,
        &format!(
            "execution {}: stage {} runs again ({which})",
            args.execution, args.stage
        ),
    )
}

/// `ferry transition disable|enable NAME --into STAGE`.
pub async fn transition(global: &GlobalArgs, command: &TransitionCommand) -> Result<()> {
    let (name, stage, enabled, reason) = match command {
        TransitionCommand::Disable(a) => (&a.name, &a.into, false, a.reason.clone()),
        TransitionCommand::Enable(a) => (&a.name, &a.into, true, String::new()),
    };
    let mut api = client::connect(global).await?;
    api.pipelines
        .set_transition(pb::SetTransitionRequest {
            pipeline: name.clone(),
            stage: stage.clone(),
            enabled,
            reason,
        })
        .await?;
    let done = if enabled {
        format!("transition into {stage} enabled; waiting executions go on")
    } else {
        format!("transition into {stage} disabled; executions wait before it")
    };
    report(global.output, name, &done)
}
