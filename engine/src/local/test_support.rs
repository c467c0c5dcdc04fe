//! An [`Observer`] that records what it hears, for the module's tests.

use super::{ActionEnd, ActionName, ApprovalAsk, Decision, Observer};

#[derive(Default)]
pub struct Recorder {
    pub lines: Vec<String>,
    pub ends: Vec<ActionEnd>,
    pub notes: Vec<String>,
}

impl Observer for Recorder {
    fn started(&mut self, _: &ActionName, _: Option<&str>) {}

    fn log(&mut self, name: &ActionName, line: &str) {
        self.lines.push(format!("{name}: {line}"));
    }

    fn finished(&mut self, end: &ActionEnd) {
        self.ends.push(end.clone());
    }

    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }

    fn approve(&mut self, _: &ApprovalAsk) -> Decision {
        Decision::Approve
    }
}
