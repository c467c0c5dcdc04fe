//! `ferry secret set/list/rm`: values go to the cluster (sealed there) and
//! never come back; listing shows names, who set them and when.

use std::io::Read as _;

use anyhow::{Context, Result, bail};
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, SecretCommand};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct SecretJson<'a> {
    name: &'a str,
    updated_by: &'a str,
    updated_at: String,
}

fn print_list(global: &GlobalArgs, list: &[pb::SecretView]) -> Result<()> {
    match global.output {
        Format::Json => output::print_json(
            &list
                .iter()
                .map(|s| SecretJson {
                    name: &s.name,
                    updated_by: &s.updated_by,
                    updated_at: wire::time(s.updated_at.as_ref()),
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            let mut t = Table::new(&["NAME", "UPDATED-BY", "UPDATED-AT"]);
            for s in list {
                t.row([
                    s.name.clone(),
                    s.updated_by.clone(),
                    wire::time(s.updated_at.as_ref()),
                ]);
            }
            output::print(&t.render())
        }
    }
}

pub async fn run(global: &GlobalArgs, command: &SecretCommand) -> Result<()> {
    match command {
        SecretCommand::Set(a) => {
            let value = match &a.from_file {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .context("reading the value from standard input")?;
                    // A value typed or piped with `echo` ends with one newline that is not part of it.
                    if v.ends_with(b"\n") {
                        v.pop();
                    }
                    v
                }
            };
            if value.is_empty() {
                bail!(
                    "the secret's value is empty (pass --from-file or pipe it on standard input)"
                );
            }
            let mut api = client::connect(global).await?;
            let view = api
                .secrets
                .set_secret(pb::SetSecretRequest {
                    name: a.name.clone(),
                    value,
                })
                .await?
                .into_inner();
            output::print(&format!(
                "secret {} set by {}\n",
                view.name, view.updated_by
            ))
        }
        SecretCommand::List => {
            let mut api = client::connect(global).await?;
            let list = api
                .secrets
                .list_secrets(pb::ListSecretsRequest::default())
                .await?
                .into_inner()
                .secrets;
            print_list(global, &list)
        }
        SecretCommand::Rm(a) => {
            let mut api = client::connect(global).await?;
            api.secrets
                .remove_secret(pb::SecretRequest {
                    name: a.name.clone(),
                })
                .await?;
            output::print(&format!("secret {} removed\n", a.name))
        }
    }
}
