//! `ferry`: the operator CLI of a Ferry cluster. This file only parses the
//! command line, dispatches to [`commands`], and turns a failure into
//! `error: ...` on stderr with exit code 1 (clap exits 2 on usage errors).
//! `run --wait`, `status --watch` and `exec` exit with their execution's
//! outcome instead: 0 succeeded, 1 did not, 2 for any error of the command
//! (for `exec`, an invalid pipeline too).

mod args;
mod client;
mod commands;
mod errors;
mod failover;
mod output;
mod wire;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use args::{AgentsCommand, Cli, Command, PipelineCommand, TokenCommand};

fn main() -> ExitCode {
    ferry_certs::install_crypto_provider();
    init_tracing();
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(dispatch(cli)))
    {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", errors::render(&e));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    use commands::*;
    let g = &cli.global;
    match &cli.command {
        Command::Certs(args::CertsCommand::Revoke(a)) => certs::revoke(g, a).await?,
        Command::Certs(args::CertsCommand::Renew(a)) => certs::renew(g, a).await?,
        Command::Certs(command) => certs::run(command, g.output)?,
        Command::Pipeline(PipelineCommand::Lint(a)) => return pipeline::lint(a, g.output),
        Command::Pipeline(PipelineCommand::Apply(a)) => pipeline::apply(g, a).await?,
        Command::Pipeline(PipelineCommand::List) => pipeline::list(g).await?,
        Command::Pipeline(PipelineCommand::Show(a)) => pipeline::show(g, a).await?,
        // Scripts read these two by their exit code: 2 is an error of the
        // command itself, 1 an execution that did not succeed.
        Command::Run(a) if a.wait => return Ok(outcome(run::run(g, a).await)),
        Command::Status(a) if a.watch => return Ok(outcome(status::status(g, a).await)),
        // 0 all succeeded, 1 an action failed, 2 an invalid pipeline or an
        // error of the command itself.
        Command::Exec(a) => return Ok(outcome(exec::exec(a, g.output).await)),
        Command::Run(a) => {
            run::run(g, a).await?;
        }
        Command::Status(a) => {
            status::status(g, a).await?;
        }
        Command::Stop(a) => steer::stop(g, a).await?,
        Command::Retry(a) => steer::retry(g, a).await?,
        Command::Transition(command) => steer::transition(g, command).await?,
        Command::Executions(a) => status::executions(g, a).await?,
        Command::Logs(a) => logs::run(g, a).await?,
        Command::Approve(a) => approve::approve(g, a).await?,
        Command::Reject(a) => approve::reject(g, a).await?,
        Command::Agents(AgentsCommand::List) => agents::list(g).await?,
        Command::Agents(AgentsCommand::Drain(a)) => agents::drain(g, &a.name, a.undo).await?,
        Command::Agents(AgentsCommand::Remove(a)) => agents::remove(g, &a.name).await?,
        Command::Agents(AgentsCommand::Label(a)) => agents::label(g, a).await?,
        Command::Token(TokenCommand::Create(a)) => token::create(g, a).await?,
        Command::Rbac(command) => rbac::run(g, command).await?,
        Command::Whoami => rbac::whoami(g).await?,
        Command::Ui(args) => rbac::ui(g, args).await?,
        Command::Cluster(command) => cluster::run(g, command).await?,
        Command::Artifacts(command) => artifacts::run(g, command).await?,
        Command::Cache(command) => cache::run(g, command).await?,
        Command::Secret(command) => secret::run(g, command).await?,
        Command::Env(command) => return env::run(g, command).await,
        Command::Deployments(command) => deployments::run(g, command).await?,
        Command::Rollback(args) => deployments::rollback(g, args).await?,
        Command::Notify(command) => notify::run(g, command).await?,
        Command::Events(args) => events::run(g, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code of a command that followed an execution to its end: the
/// execution's (0 succeeded, 1 did not), or 2 when the command itself failed.
fn outcome(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", errors::render(&e));
            ExitCode::from(2)
        }
    }
}

/// Diagnostics of tonic, h2 and rustls on stderr, only when RUST_LOG is set.
fn init_tracing() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
