//! The Tests part of an execution's page: for each action whose test
//! reports were read, its counts, then its failed tests (failures first:
//! what people open the page for) with the first lines of each failure,
//! then reports that could not be read. Empty when no action has reports.

use maud::{Markup, html};

use ferry_proto as pb;

/// The section's content (nothing when no action reported tests).
pub fn render(view: &pb::ExecutionView) -> Markup {
    let reported: Vec<(String, &pb::TestSummary)> = view
        .stages
        .iter()
        .flat_map(|s| {
            s.actions
                .iter()
                .filter_map(move |a| Some((format!("{}/{}", s.name, a.name), a.tests.as_ref()?)))
        })
        .collect();
    if reported.is_empty() {
        return html! {};
    }
    // Actions with failing tests first.
    let mut reported = reported;
    reported.sort_by_key(|(_, t)| std::cmp::Reverse(t.failed + t.errors));
    html! {
        h2 { "Tests" }
        @for (name, t) in reported {
            @let summary = ferry_pipeline::reports::TestSummary::from(t.clone());
            div.tests {
                h3 { code { (name) } " " (summary.line()) }
                @if !summary.failures.is_empty() {
                    ol.failures {
                        @for f in &summary.failures {
                            li {
                                span class={ "badge " (if f.error { "Error" } else { "Failed" }) } {
                                    (if f.error { "error" } else { "failed" })
                                }
                                " " code { (f.title()) }
                                @if !f.text.is_empty() { pre { (f.text) } }
                            }
                        }
                    }
                }
                @let unlisted = summary.failing().saturating_sub(summary.failures.len() as u64);
                @if unlisted > 0 { p { "… and " (unlisted) " more failing tests (see the report)" } }
                @for p in &summary.problems { p.problem { (p) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_come_first_and_text_is_escaped() {
        let passing = pb::TestSummary {
            total: 5,
            passed: 5,
            ..Default::default()
        };
        let failing = pb::TestSummary {
            total: 2,
            passed: 1,
            failed: 1,
            failures: vec![pb::TestFailure {
                suite: "s".into(),
                name: "<script>alert(1)</script>".into(),
                error: false,
                text: "left & right".into(),
            }],
            ..Default::default()
        };
        let action = |name: &str, tests| pb::ActionView {
            name: name.into(),
            tests: Some(tests),
            ..Default::default()
        };
        let view = pb::ExecutionView {
            stages: vec![pb::StageView {
                name: "test".into(),
                actions: vec![action("ok", passing), action("bad", failing)],
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = render(&view).into_string();
        let bad = html.find("test/bad").unwrap_or(usize::MAX);
        let ok = html.find("test/ok").unwrap_or(0);
        assert!(bad < ok, "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("left &amp; right"), "{html}");
        assert!(
            render(&pb::ExecutionView::default())
                .into_string()
                .is_empty()
        );
    }
}
