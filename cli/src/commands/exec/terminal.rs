//! What `ferry exec` prints while it runs: each log line prefixed by its
//! action (`build/compile | ...`), a line when an action starts and ends,
//! Ferry's notes (`==> ...`), and approvals asked on the terminal. With
//! `-o json` all of it goes to stderr, so stdout holds only the final JSON.

use std::io::{BufRead as _, IsTerminal as _, Write};

use ferry_agent::local::{ActionEnd, ActionName, ApprovalAsk, Decision, Observer};
use ferry_pipeline::Pipeline;

pub struct Terminal {
    /// Width of the widest `STAGE/ACTION`, for aligned prefixes.
    width: usize,
    approve: bool,
    to_stderr: bool,
}

impl Terminal {
    pub fn new(pipeline: &Pipeline, approve: bool, to_stderr: bool) -> Terminal {
        let width = pipeline
            .stages
            .iter()
            .flat_map(|s| {
                s.actions
                    .iter()
                    .map(move |a| s.name.len() + 1 + a.name.len())
            })
            .max()
            .unwrap_or(0);
        Terminal {
            width,
            approve,
            to_stderr,
        }
    }

    fn line(&self, text: &str) {
        // A closed stdout (`| head`) must not stop the run: what runs still
        // finishes and cleans up.
        let _ = if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{text}")
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        };
    }
}

impl Observer for Terminal {
    fn started(&mut self, name: &ActionName, container: Option<&str>) {
        match container {
            Some(c) => self.line(&format!("==> {name} started (container {c})")),
            None => self.line(&format!("==> {name} started")),
        }
    }

    fn log(&mut self, name: &ActionName, line: &str) {
        let name = name.to_string();
        self.line(&format!("{name:<width$} | {line}", width = self.width));
    }

    fn finished(&mut self, end: &ActionEnd) {
        // A kept container is named in the log, and again after the table.
        let text = if end.succeeded {
            format!("==> {} succeeded", end.name)
        } else {
            match end.exit_code {
                Some(code) if code > 0 => {
                    format!("==> {} failed (exit {code}): {}", end.name, end.message)
                }
                _ => format!("==> {} failed: {}", end.name, end.message),
            }
        };
        self.line(&text);
    }

    fn note(&mut self, text: &str) {
        self.line(&format!("==> {text}"));
    }

    fn approve(&mut self, ask: &ApprovalAsk) -> Decision {
        let about = [ask.message.trim(), ask.url.trim()]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if self.approve {
            self.line(&format!("==> {} approved (--approve) {about}", ask.name));
            return Decision::Approve;
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Decision::Skip(
                "no terminal to ask on (--approve approves); deploy actions do not run here"
                    .to_string(),
            );
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "==> approve {}? {about} [y/N] ", ask.name);
        let _ = err.flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return Decision::Skip("the answer could not be read".to_string());
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Decision::Approve,
            _ => Decision::Reject("declined at the prompt".to_string()),
        }
    }
}
