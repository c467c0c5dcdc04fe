//! The log sink of a local run's action: the engine's output, secrets
//! masked first with the agent's own [`Masker`], cut into whole lines and
//! handed to the [`Observer`](super::Observer) under the action's name. It
//! keeps nothing: a line the masker has not seen whole is never passed on.

use std::sync::{Arc, Mutex};

use crate::runner::LogSink;
use ferry_pipeline::mask::Masker;

use super::{ActionName, Observer, lock};

/// Longest line passed on as one; a longer one is cut here.
const MAX_LINE: usize = 64 * 1024;

/// One action's log, to the observer line by line.
pub struct LineLog {
    action: ActionName,
    masker: Masker,
    partial: Vec<u8>,
    observer: Arc<Mutex<dyn Observer>>,
}

impl LineLog {
    pub fn new(action: ActionName, masker: Masker, observer: Arc<Mutex<dyn Observer>>) -> LineLog {
        LineLog {
            action,
            masker,
            partial: Vec::new(),
            observer,
        }
    }

    /// `text` with the action's secrets masked.
    pub fn mask(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.masker.mask(text.as_bytes())).into_owned()
    }

    fn lines(&mut self, masked: Vec<u8>) {
        self.partial.extend_from_slice(&masked);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.partial.len() > MAX_LINE {
            let line: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        lock(&self.observer).log(&self.action, &String::from_utf8_lossy(line));
    }

    /// Passes on whatever is still held back (a last line without `\n`).
    pub fn finish(&mut self) {
        let rest = self.masker.finish();
        self.lines(rest);
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }
}

impl LogSink for LineLog {
    fn write(&mut self, bytes: &[u8]) {
        let masked = self.masker.push(bytes);
        self.lines(masked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::test_support::Recorder;

    #[test]
    fn lines_are_masked_whole_and_named_by_action() {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let observer: Arc<Mutex<dyn Observer>> = recorder.clone();
        let name = ActionName {
            stage: "build".into(),
            action: "compile".into(),
        };
        let mut log = LineLog::new(name, Masker::new([b"hunter2".to_vec()]), observer);
        log.write(b"token hun");
        log.write(b"ter2 ok\r\nsecond");
        log.finish();
        let seen = lock(&recorder).lines.clone();
        assert_eq!(
            seen,
            vec![
                "build/compile: token *** ok".to_string(),
                "build/compile: second".to_string()
            ]
        );
    }
}
