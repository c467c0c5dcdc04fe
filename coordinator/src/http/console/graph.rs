//! An execution drawn as a graph, in server-rendered SVG: stages left to
//! right, inside a stage its run-order groups left to right (they run in
//! turn) and the actions of a group stacked (they run in parallel). Each
//! node is coloured by its status (classes the stylesheet colours), shows
//! the attempt, agent and duration, and links to the action's log.

use ferry_proto as pb;
use maud::{Markup, html};

use super::layout::{action_word, duration, enc, ms};

const NODE_W: i64 = 184;
const NODE_H: i64 = 62;
/// Between stacked (parallel) nodes.
const GAP_Y: i64 = 12;
/// Between run-order groups of a stage.
const GROUP_GAP: i64 = 28;
/// Inside a stage's box, around its nodes.
const PAD: i64 = 12;
/// Height of a stage's title.
const HEAD: i64 = 26;
/// Between stages.
const STAGE_GAP: i64 = 44;
/// Characters of a name that fit a node.
const NAME_CHARS: usize = 22;

/// Where one stage's box and nodes go.
struct StageBox<'a> {
    stage: &'a pb::StageView,
    x: i64,
    width: i64,
    /// Its actions' indexes by run-order group, in order.
    groups: Vec<Vec<usize>>,
}

/// The actions of `stage` grouped by run order, ascending.
fn groups(stage: &pb::StageView) -> Vec<Vec<usize>> {
    let mut orders: Vec<u32> = stage.actions.iter().map(|a| a.run_order).collect();
    orders.sort_unstable();
    orders.dedup();
    orders
        .into_iter()
        .map(|o| {
            (0..stage.actions.len())
                .filter(|&i| stage.actions[i].run_order == o)
                .collect()
        })
        .collect()
}

fn clip(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(chars.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The graph of `view`; nodes link to `log_href` + `?action=STAGE/ACTION`.
pub fn render(view: &pb::ExecutionView, log_href: &str, now: i64) -> Markup {
    let mut x = 0;
    let boxes: Vec<StageBox> = view
        .stages
        .iter()
        .map(|stage| {
            let groups = groups(stage);
            let n = groups.len().max(1) as i64;
            let width = 2 * PAD + n * NODE_W + (n - 1) * GROUP_GAP;
            let b = StageBox {
                stage,
                x,
                width,
                groups,
            };
            x += width + STAGE_GAP;
            b
        })
        .collect();
    let tallest = boxes
        .iter()
        .flat_map(|b| b.groups.iter().map(Vec::len))
        .max()
        .unwrap_or(1)
        .max(1) as i64;
    let height = HEAD + 2 * PAD + tallest * NODE_H + (tallest - 1) * GAP_Y;
    let width = (x - STAGE_GAP).max(NODE_W);
    let mid = HEAD + PAD + NODE_H / 2;
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" width=(width + 2) height=(height + 2)
            viewBox={ "-1 -1 " (width + 2) " " (height + 2) } role="img"
            aria-label={ "Stages of execution " (view.execution_id) } {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto" {
                    path d="M0,0 L10,5 L0,10 z" class="arrowhead" {}
                }
            }
            @for (i, b) in boxes.iter().enumerate() {
                @if i > 0 {
                    line.edge x1=(b.x - STAGE_GAP) y1=(mid) x2=(b.x - 2) y2=(mid) marker-end="url(#arrow)" {}
                }
                g class={ "stage " (action_word(b.stage.status())) } {
                    rect.stagebox x=(b.x) y="0" width=(b.width) height=(height) rx="8" {}
                    text.stagename x=(b.x + PAD) y="18" { (clip(&b.stage.name, ((b.width - 2 * PAD) / 8) as usize)) }
                    @for (gi, group) in b.groups.iter().enumerate() {
                        @let gx = b.x + PAD + gi as i64 * (NODE_W + GROUP_GAP);
                        @if gi > 0 {
                            line.edge x1=(gx - GROUP_GAP) y1=(mid) x2=(gx - 2) y2=(mid) marker-end="url(#arrow)" {}
                        }
                        @for (row, &ai) in group.iter().enumerate() {
                            (node(&b.stage.name, &b.stage.actions[ai], gx, HEAD + PAD + row as i64 * (NODE_H + GAP_Y), log_href, now))
                        }
                    }
                }
            }
        }
    }
}

fn node(stage: &str, a: &pb::ActionView, x: i64, y: i64, log_href: &str, now: i64) -> Markup {
    let word = action_word(a.status());
    let href = format!("{log_href}?action={}", enc(&format!("{stage}/{}", a.name)));
    let took = duration(ms(&a.started_at), ms(&a.finished_at), now);
    let second = match a.status() {
        pb::ActionStatus::WaitingForApproval => "waiting for approval".to_string(),
        _ if a.attempt > 1 => format!("{word} · attempt {}", a.attempt),
        _ => word.to_string(),
    };
    let third = if a.agent.is_empty() {
        if took == "-" {
            String::new()
        } else {
            took.clone()
        }
    } else {
        format!("{} · {took}", clip(&a.agent, 14))
    };
    let node = html! {
        g class={ "node " (word) } data-action={ (stage) "/" (a.name) } {
            title { (stage) "/" (a.name) ": " (word)
                @if !a.message.is_empty() { " — " (a.message) } }
            rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
            text.name x=(x + 10) y=(y + 20) { (clip(&a.name, NAME_CHARS)) }
            text x=(x + 10) y=(y + 38) { (second) }
            text x=(x + 10) y=(y + 54) { (third) }
        }
    };
    // Only an action that ran has a log to open.
    html! {
        @if a.attempt > 0 { a href=(href) { (node) } } @else { (node) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str, order: u32, status: pb::ActionStatus) -> pb::ActionView {
        pb::ActionView {
            name: name.into(),
            run_order: order,
            status: status.into(),
            attempt: 1,
            ..Default::default()
        }
    }

    #[test]
    fn parallel_actions_stack_and_groups_run_left_to_right() {
        let view = pb::ExecutionView {
            execution_id: "e1".into(),
            stages: vec![
                pb::StageView {
                    name: "build".into(),
                    actions: vec![
                        action("lint", 1, pb::ActionStatus::Succeeded),
                        action("compile", 1, pb::ActionStatus::InProgress),
                        action("package", 2, pb::ActionStatus::Pending),
                    ],
                    ..Default::default()
                },
                pb::StageView {
                    name: "gate".into(),
                    actions: vec![action("release", 1, pb::ActionStatus::WaitingForApproval)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let svg = render(&view, "/log", 0).into_string();
        // Two groups in stage one: lint and compile stacked at the same x.
        assert!(svg.contains(r#"<rect x="12" y="38""#), "{svg}");
        assert!(svg.contains(r#"<rect x="12" y="112""#), "{svg}");
        // package runs after them, to the right.
        assert!(svg.contains(r#"<rect x="224" y="38""#), "{svg}");
        assert!(svg.contains(r#"class="node WaitingForApproval""#), "{svg}");
        assert!(svg.contains("waiting for approval"), "{svg}");
        assert!(svg.contains("/log?action=build%2Fcompile"), "{svg}");
    }

    #[test]
    fn names_are_escaped_and_clipped() {
        let view = pb::ExecutionView {
            stages: vec![pb::StageView {
                name: "s".into(),
                actions: vec![action(
                    "<script>alert(1)</script>-a-very-long-name",
                    1,
                    pb::ActionStatus::Failed,
                )],
                ..Default::default()
            }],
            ..Default::default()
        };
        let svg = render(&view, "/log", 0).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains('…'), "{svg}");
    }
}
