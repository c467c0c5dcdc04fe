//! The pipelines page (each pipeline with its newest executions as chips)
//! and a pipeline's page: its definition (YAML, highlighted), its version
//! history and its executions, fifty to a page.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::layout::{
    badge, chip, duration, enc, execution_href, execution_word, page, short, time,
};
use super::{Viewer, field, op_refused, query_of};
use crate::ops::Ops;
use crate::ops::console::{ExecutionChip, PipelineRow};
use crate::ops::page::PageRequest;
use crate::views::now_ms;

/// Executions on one page of a pipeline's page.
const EXECUTIONS_PER_PAGE: usize = 50;

/// `GET /`: every pipeline with its newest executions.
pub async fn list(State(ops): State<Ops>, viewer: Viewer) -> Response {
    let rows = match ops.console_pipelines().await {
        Ok(rows) => rows,
        Err(e) => return op_refused(e, "Cannot read the pipelines"),
    };
    Html(page("Pipelines", Some(&viewer), table(&rows)).into_string()).into_response()
}

fn table(rows: &[PipelineRow]) -> Markup {
    let now = now_ms();
    html! {
        h1 { "Pipelines" }
        @if rows.is_empty() {
            p { "No pipelines yet: apply one with " code { "ferry pipeline apply -f FILE" } "." }
        } @else {
            table.pipelines {
                thead { tr { th { "Pipeline" } th { "Version" } th { "Latest executions" }
                    th { "Revision" } th { "Started by" } th { "Duration" } } }
                tbody {
                    @for row in rows {
                        tr {
                            td { a href={ "/pipelines/" (enc(&row.name)) } { (row.name) } }
                            td { (row.version) }
                            td.chips {
                                @for e in &row.recent { (chip(&row.name, &e.id, e.status, e.started_at)) }
                            }
                            @if let Some(last) = row.recent.first() {
                                td { code { (short(&last.revision)) } }
                                td { (started_by(last)) }
                                td { (duration(Some(last.started_at), last.finished_at, now)) }
                            } @else {
                                td { "-" } td { "-" } td { "-" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn started_by(e: &ExecutionChip) -> &str {
    e.started_by.as_deref().unwrap_or(e.trigger.as_str())
}

/// A pipeline's page as read in one linearizable read.
struct PipelinePage {
    yaml: String,
    version: u64,
    latest: u64,
    /// (version, applied by, applied at), newest first.
    versions: Vec<(u64, String, i64)>,
}

/// `GET /pipelines/{pipeline}[?version=N][&page=TOKEN]`.
pub async fn show(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    uri: Uri,
    viewer: Viewer,
) -> Response {
    let query = query_of(&uri);
    let version = field(&query, "version")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let token = field(&query, "page").unwrap_or_default();
    let def = ops
        .get_pipeline(&name, version, |rec, v| PipelinePage {
            yaml: v.yaml.clone(),
            version: v.version,
            latest: rec.latest().map_or(0, |l| l.version),
            versions: rec
                .versions
                .iter()
                .rev()
                .map(|v| (v.version, v.applied_by.clone(), v.applied_at))
                .collect(),
        })
        .await;
    let def = match def {
        Ok(d) => d,
        Err(e) => return op_refused(e, "No such pipeline"),
    };
    let executions = match PageRequest::new(0, token, EXECUTIONS_PER_PAGE) {
        Ok(page) => {
            ops.list_executions(&name, &page, |_, e| ExecutionChip::of(e))
                .await
        }
        Err(e) => Err(e),
    };
    let (executions, next) = match executions {
        Ok(x) => x,
        Err(e) => return op_refused(e, "Cannot read the executions"),
    };
    let now = now_ms();
    let here = format!("/pipelines/{}", enc(&name));
    let body = html! {
        p.crumbs { a href="/" { "Pipelines" } " › " (name) }
        h1 { (name) }
        div.columns {
            section.executions {
                h2 { "Executions" }
                @if executions.is_empty() { p { "None yet: start one with " code { "ferry run " (name) } "." } }
                table {
                    thead { tr { th { "Execution" } th { "Status" } th { "Revision" } th { "Started by" } th { "Started" } th { "Duration" } } }
                    tbody {
                        @for e in &executions {
                            tr {
                                td { a href=(execution_href(&name, &e.id)) { code { (short(&e.id)) } } }
                                td { (badge(execution_word(e.status))) }
                                td { code { (short(&e.revision)) } }
                                td { (started_by(e)) }
                                td { (time(Some(e.started_at))) }
                                td { (duration(Some(e.started_at), e.finished_at, now)) }
                            }
                        }
                    }
                }
                @if !next.is_empty() { p { a href={ (here) "?page=" (enc(&next)) } { "Older executions →" } } }
            }
            section.definition {
                h2 { "Definition, version " (def.version) @if def.version != def.latest { " (latest is " (def.latest) ")" } }
                pre.yaml { (highlight(&def.yaml)) }
                h2 { "Versions" }
                table {
                    thead { tr { th { "Version" } th { "Applied by" } th { "Applied" } } }
                    tbody {
                        @for (v, by, at) in &def.versions {
                            tr {
                                td { a href={ (here) "?version=" (v) } { (v) } }
                                td { (by) } td { (time(Some(*at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    Html(page(&name, Some(&viewer), body).into_string()).into_response()
}

/// YAML with its comments, keys and quoted strings marked for colour (a
/// line-by-line reading, enough for a definition; maud escapes the text).
fn highlight(yaml: &str) -> Markup {
    html! {
        @for line in yaml.lines() {
            (highlight_line(line)) "\n"
        }
    }
}

fn highlight_line(line: &str) -> Markup {
    let (code, comment) = split_comment(line);
    let indent = code.len() - code.trim_start().len();
    let rest = &code[indent..];
    let dash = if rest.starts_with("- ") { 2 } else { 0 };
    let item = &rest[dash..];
    let key_end = item
        .find(": ")
        .or_else(|| item.ends_with(':').then(|| item.len() - 1))
        .filter(|&i| !item[..i].contains(['"', '\'', '{', '[']) && !item[..i].trim().is_empty());
    html! {
        (&code[..indent + dash])
        @if let Some(k) = key_end {
            span.k { (&item[..k]) } ":" (value(&item[k + 1..]))
        } @else {
            (value(item))
        }
        @if let Some(c) = comment { span.c { (c) } }
    }
}

fn value(v: &str) -> Markup {
    let t = v.trim();
    let quoted = t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')));
    html! { @if quoted { span.s { (v) } } @else { (v) } }
}

/// A line's code and its `#` comment (outside quotes), if any.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return (&line[..i], Some(&line[i..])),
            None => {}
        }
        prev = c;
    }
    (line, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_comments_and_strings_are_marked() {
        let out = highlight_line(r#"  - name: "a # b"  # note"#).into_string();
        assert_eq!(
            out,
            r#"  - <span class="k">name</span>:<span class="s"> &quot;a # b&quot;  </span><span class="c"># note</span>"#
        );
        let out = highlight_line("stages:").into_string();
        assert_eq!(out, r#"<span class="k">stages</span>:"#);
        let out = highlight_line("  commands: [\"<b>\"]").into_string();
        assert!(out.contains("&lt;b&gt;"), "{out}");
        assert_eq!(
            highlight_line("#x").into_string(),
            r#"<span class="c">#x</span>"#
        );
    }
}
