//! `ferry env`: deployment environments — lint a file locally, apply it, list
//! environments and show one host by host.

use std::process::ExitCode;

use anyhow::Result;
use ferry_proto as pb;

use super::pipeline::{Lint, report};
use super::{display_name, read_input};
use crate::args::{EnvCommand, Format, GlobalArgs};
use crate::client;
use crate::output::{self, Table, or_dash};
use crate::wire;

fn hosts_table(envs: &[pb::EnvironmentView]) -> Table {
    let mut t = Table::new(&[
        "ENVIRONMENT",
        "HOST",
        "KIND",
        "ADDRESS",
        "USER",
        "HOST-KEY",
        "SECRET",
        "PATH",
    ]);
    for e in envs {
        for h in &e.hosts {
            let secret = if h.missing_secrets.is_empty() {
                h.secret.clone()
            } else {
                format!("{} (NOT SET)", h.secret)
            };
            t.row([
                e.name.clone(),
                h.name.clone(),
                wire::host_kind(h.kind),
                h.address.clone(),
                or_dash(&h.user).to_string(),
                or_dash(&h.host_key).to_string(),
                or_dash(&secret).to_string(),
                or_dash(&h.path).to_string(),
            ]);
        }
    }
    t
}

pub async fn run(global: &GlobalArgs, command: &EnvCommand) -> Result<ExitCode> {
    match command {
        EnvCommand::Lint(a) => {
            let text = read_input(&a.file)?;
            let diagnostics = ferry_pipeline::parse_environment(&text)
                .err()
                .unwrap_or_default();
            return report(
                &Lint {
                    file: display_name(&a.file),
                    diagnostics,
                },
                global.output,
            );
        }
        EnvCommand::Apply(a) => {
            let yaml = read_input(&a.file)?;
            let mut api = client::connect(global).await?;
            let req = pb::ApplyEnvironmentRequest {
                yaml,
                file_name: display_name(&a.file),
            };
            let view = api.environments.apply_environment(req).await?.into_inner();
            match global.output {
                Format::Json => output::print_json(&serde_json::json!({
                    "name": view.name, "version": view.version, "unchanged": view.unchanged,
                }))?,
                Format::Table => {
                    let verb = if view.unchanged {
                        "unchanged at"
                    } else {
                        "applied as"
                    };
                    output::print(&format!(
                        "environment {} {verb} version {}\n",
                        view.name, view.version
                    ))?;
                    for h in view.hosts.iter().filter(|h| !h.missing_secrets.is_empty()) {
                        output::print(&format!(
                            "warning: host {} names secret `{}`, which is not set (ferry secret set {})\n",
                            h.name, h.secret, h.secret
                        ))?;
                    }
                }
            }
        }
        EnvCommand::List | EnvCommand::Show(_) => {
            let mut api = client::connect(global).await?;
            let envs = match command {
                EnvCommand::Show(a) => {
                    vec![
                        api.environments
                            .get_environment(pb::GetEnvironmentRequest {
                                name: a.name.clone(),
                            })
                            .await?
                            .into_inner(),
                    ]
                }
                _ => {
                    api.environments
                        .list_environments(pb::ListEnvironmentsRequest::default())
                        .await?
                        .into_inner()
                        .environments
                }
            };
            match global.output {
                Format::Json => output::print_json(
                    &envs
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "name": e.name, "version": e.version, "applied_by": e.applied_by,
                                "applied_at": wire::time(e.applied_at.as_ref()),
                                "hosts": e.hosts.iter().map(|h| serde_json::json!({
                                    "name": h.name, "kind": wire::host_kind(h.kind), "address": h.address, "user": h.user,
                                    "host_key": h.host_key, "secret": h.secret, "path": h.path,
                                    "missing_secrets": h.missing_secrets,
                                })).collect::<Vec<_>>(),
                            })
                        })
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => output::print(&hosts_table(&envs).render())?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
