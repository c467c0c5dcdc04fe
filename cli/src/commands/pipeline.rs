//! `ferry pipeline`: lint a file locally, apply it to the cluster, list
//! pipelines and show one version with its YAML.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use ferry_pipeline::Diagnostic;
use ferry_proto as pb;
use serde::Serialize;

use super::{display_name, read_input};
use crate::args::{ApplyArgs, Format, GlobalArgs, LintArgs, ShowArgs};
use crate::client;
use crate::output::{self, Table, or_dash};
use crate::wire;

/// The result of linting one file.
#[derive(Debug)]
pub struct Lint {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Lint {
    /// `FILE:LINE:COL: message` per problem, or `FILE: ok`.
    pub fn render_text(&self) -> String {
        if self.diagnostics.is_empty() {
            return format!("{}: ok\n", self.file);
        }
        self.diagnostics
            .iter()
            .map(|d| format!("{}:{d}\n", self.file))
            .collect()
    }
}

/// Parses `path` with the same parser the coordinator uses.
pub fn lint_file(path: &Path) -> Result<Lint> {
    let text = read_input(path)?;
    let diagnostics = match ferry_pipeline::parse(&text) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics,
    };
    Ok(Lint {
        file: display_name(path),
        diagnostics,
    })
}

#[derive(Serialize)]
struct LintJson<'a> {
    file: &'a str,
    ok: bool,
    problems: Vec<ProblemJson<'a>>,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    line: usize,
    column: usize,
    message: &'a str,
}

/// `ferry pipeline lint FILE`: exit code 1 if the file has problems.
pub fn lint(args: &LintArgs, format: Format) -> Result<ExitCode> {
    report(&lint_file(&args.file)?, format)
}

/// Prints a lint report (text or JSON); exit code 1 if it found problems.
pub fn report(report: &Lint, format: Format) -> Result<ExitCode> {
    match format {
        Format::Table => output::print(&report.render_text())?,
        Format::Json => output::print_json(&LintJson {
            file: &report.file,
            ok: report.diagnostics.is_empty(),
            problems: report
                .diagnostics
                .iter()
                .map(|d| ProblemJson {
                    line: d.line,
                    column: d.column,
                    message: &d.message,
                })
                .collect(),
        })?,
    }
    Ok(if report.diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Serialize)]
struct AppliedJson<'a> {
    name: &'a str,
    version: u64,
    unchanged: bool,
}

/// `ferry pipeline apply -f FILE`.
pub async fn apply(global: &GlobalArgs, args: &ApplyArgs) -> Result<()> {
    let yaml = read_input(&args.file)?;
    let mut api = client::connect(global).await?;
    let reply = api
        .pipelines
        .apply_pipeline(pb::ApplyPipelineRequest {
            request_id: String::new(),
            yaml,
            file_name: display_name(&args.file),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Json => output::print_json(&AppliedJson {
            name: &reply.name,
            version: reply.version,
            unchanged: reply.unchanged,
        }),
        Format::Table if reply.unchanged => output::print(&format!(
            "pipeline {} unchanged at version {}",
            reply.name, reply.version
        )),
        Format::Table => output::print(&format!(
            "pipeline {} version {} applied",
            reply.name, reply.version
        )),
    }
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    name: &'a str,
    version: u64,
    source: &'a str,
    branch: &'a str,
    last_execution_id: &'a str,
    last_status: String,
    updated_at: String,
}

/// The pipeline list as a table.
pub fn summaries_table(pipelines: &[pb::PipelineSummary]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "VERSION",
        "SOURCE",
        "BRANCH",
        "LAST-EXECUTION",
        "STATUS",
    ]);
    for p in pipelines {
        table.row([
            p.name.clone(),
            p.version.to_string(),
            p.source.clone(),
            p.branch.clone(),
            p.last_execution_id.clone(),
            wire::execution_status(p.last_status),
        ]);
    }
    table
}

/// `ferry pipeline list`.
pub async fn list(global: &GlobalArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let mut pipelines = api
        .pipelines
        .list_pipelines(pb::ListPipelinesRequest::default())
        .await?
        .into_inner()
        .pipelines;
    pipelines.sort_by(|a, b| a.name.cmp(&b.name));
    match global.output {
        Format::Table => output::print(&summaries_table(&pipelines).render()),
        Format::Json => output::print_json(
            &pipelines
                .iter()
                .map(|p| SummaryJson {
                    name: &p.name,
                    version: p.version,
                    source: &p.source,
                    branch: &p.branch,
                    last_execution_id: &p.last_execution_id,
                    last_status: wire::execution_status(p.last_status),
                    updated_at: wire::time(p.updated_at.as_ref()),
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[derive(Serialize)]
struct PipelineJson<'a> {
    name: &'a str,
    version: u64,
    versions: &'a [u64],
    applied_by: &'a str,
    applied_at: String,
    last_seen_revision: &'a str,
    execution_mode: String,
    schedule: &'a str,
    next_scheduled_at: String,
    disabled_transitions: Vec<TransitionJson<'a>>,
    yaml: &'a str,
}

#[derive(Serialize)]
struct TransitionJson<'a> {
    stage: &'a str,
    by: &'a str,
    reason: &'a str,
    at: String,
}

/// Header lines and then the YAML of one pipeline version.
pub fn render_pipeline(view: &pb::PipelineView) -> String {
    let versions: Vec<String> = view.versions.iter().map(u64::to_string).collect();
    let mut text = format!(
        "name:        {}\nversion:     {}\nversions:    {}\napplied by:  {}\napplied at:  {}\n",
        view.name,
        view.version,
        or_dash(&versions.join(", ")),
        or_dash(&view.applied_by),
        or_dash(&wire::time(view.applied_at.as_ref())),
    );
    if !view.last_seen_revision.is_empty() {
        text.push_str(&format!("last seen:   {}\n", view.last_seen_revision));
    }
    let mode = wire::execution_mode(view.execution_mode);
    if !mode.is_empty() {
        text.push_str(&format!("mode:        {mode}\n"));
    }
    if !view.schedule.is_empty() {
        let next = wire::time(view.next_scheduled_at.as_ref());
        text.push_str(&format!(
            "schedule:    {}, next {}\n",
            view.schedule,
            if next.is_empty() {
                "never"
            } else {
                next.as_str()
            }
        ));
    }
    for t in &view.disabled_transitions {
        text.push_str(&format!(
            "disabled:    into {} by {} at {}: {}\n",
            t.stage,
            t.by,
            wire::time(t.at.as_ref()),
            t.reason
        ));
    }
    text.push('\n');
    text.push_str(&view.yaml);
    text
}

/// `ferry pipeline show NAME [--version V]`.
pub async fn show(global: &GlobalArgs, args: &ShowArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let view = api
        .pipelines
        .get_pipeline(pb::GetPipelineRequest {
            name: args.name.clone(),
            version: args.version.unwrap_or(0),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Table => output::print(&render_pipeline(&view)),
        Format::Json => output::print_json(&PipelineJson {
            name: &view.name,
            version: view.version,
            versions: &view.versions,
            applied_by: &view.applied_by,
            applied_at: wire::time(view.applied_at.as_ref()),
            last_seen_revision: &view.last_seen_revision,
            execution_mode: wire::execution_mode(view.execution_mode),
            schedule: &view.schedule,
            next_scheduled_at: wire::time(view.next_scheduled_at.as_ref()),
            disabled_transitions: view
                .disabled_transitions
                .iter()
                .map(|t| TransitionJson {
                    stage: &t.stage,
                    by: &t.by,
                    reason: &t.reason,
                    at: wire::time(t.at.as_ref()),
                })
                .collect(),
            yaml: &view.yaml,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_reports_file_line_column() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("pipeline.yaml");
        std::fs::write(
            &path,
            "name: hello\nnmae: typo\nsource:\n  git: /srv/git/hello.git\nstages: []\n",
        )
        .expect("write");
        let report = lint_file(&path).expect("lint");
        let text = report.render_text();
        let file = path.display().to_string();
        let first = text.lines().next().expect("a line");
        assert_eq!(
            first,
            format!(
                "{file}:2:1: unknown key `nmae` in pipeline; expected one of: name, source, stages, execution_mode, variables, schedule, notifications"
            )
        );
        assert!(
            text.lines().all(|l| l.starts_with(&format!("{file}:"))),
            "{text}"
        );
        assert!(!report.diagnostics.is_empty());
    }

    #[test]
    fn lint_accepts_a_valid_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("ok.yaml");
        std::fs::write(
            &path,
            "name: hello\n\
             source:\n  git: file:///srv/git/hello.git\n  branch: main\n\
             stages:\n  - name: build\n    actions:\n      - name: compile\n        type: build\n        image: busybox\n        commands: [make]\n",
        )
        .expect("write");
        let report = lint_file(&path).expect("lint");
        assert_eq!(report.render_text(), format!("{}: ok\n", path.display()));
    }

    #[test]
    fn lint_of_a_missing_file_names_it() {
        let err = lint_file(Path::new("/nonexistent/p.yaml")).expect_err("missing");
        assert!(
            format!("{err:#}").contains("/nonexistent/p.yaml"),
            "{err:#}"
        );
    }

    #[test]
    fn pipeline_tables() {
        let table = summaries_table(&[pb::PipelineSummary {
            name: "hello".into(),
            version: 2,
            source: "file:///srv/git/hello.git".into(),
            branch: "main".into(),
            last_execution_id: String::new(),
            last_status: pb::ExecutionStatus::Unspecified.into(),
            updated_at: None,
        }]);
        assert_eq!(
            table.render(),
            "NAME   VERSION  SOURCE                     BRANCH  LAST-EXECUTION  STATUS\n\
             hello  2        file:///srv/git/hello.git  main    -               -\n"
        );
        let text = render_pipeline(&pb::PipelineView {
            name: "hello".into(),
            version: 2,
            yaml: "name: hello\n".into(),
            applied_by: "alice".into(),
            applied_at: wire::at("2024-01-01T00:00:00.000Z"),
            versions: vec![1, 2],
            last_seen_revision: String::new(),
            ..Default::default()
        });
        assert!(
            text.starts_with("name:        hello\nversion:     2\nversions:    1, 2\n"),
            "{text}"
        );
        assert!(text.ends_with("\nname: hello\n"), "{text}");
    }
}
