//! What `ferry exec` prints while it runs: each log line prefixed by its
//! action (`build/compile | ...`), a line when an action starts and ends,
//! Ferry's notes (`==> ...`), and approvals asked on the terminal. On a
//! terminal, each running action also has a live line under the scrolling
//! log (spinner, time, its last line), drawn with indicatif; elsewhere the
//! lines are plain. With `-o json` all of it goes to stderr, so stdout holds
//! only the final JSON.

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _, Write};
use std::time::Duration;

use ferry_engine::local::{ActionEnd, ActionName, ApprovalAsk, Decision, Observer};
use ferry_pipeline::Pipeline;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where the lines go.
enum Mode {
    /// Plain lines, to stdout or (for `-o json`) stderr.
    Plain { to_stderr: bool },
    /// A terminal: lines scroll above one live line per running action.
    Live {
        multi: MultiProgress,
        bars: HashMap<ActionName, ProgressBar>,
        style: ProgressStyle,
    },
}

pub struct Terminal {
    /// Width of the widest `STAGE/ACTION`, for aligned prefixes.
    width: usize,
    approve: bool,
    mode: Mode,
}

impl Terminal {
    /// `json`: the final document goes to stdout, so everything else to stderr.
    pub fn new(pipeline: &Pipeline, approve: bool, json: bool) -> Terminal {
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
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let mode = match ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:<{width}}} {{elapsed:>4}}  {{wide_msg}}"
        )) {
            Ok(style) if !json && !dumb && std::io::stdout().is_terminal() => Mode::Live {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: HashMap::new(),
                style,
            },
            _ => Mode::Plain { to_stderr: json },
        };
        Terminal {
            width,
            approve,
            mode,
        }
    }

    fn line(&self, text: &str) {
        // A closed stdout (`| head`) must not stop the run: what runs still
        // finishes and cleans up.
        let _ = match &self.mode {
            Mode::Plain { to_stderr: true } => writeln!(std::io::stderr().lock(), "{text}"),
            Mode::Plain { to_stderr: false } => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}").and_then(|()| out.flush())
            }
            Mode::Live { multi, .. } => multi.println(text),
        };
    }

    /// Asks on the terminal; anything but yes rejects.
    fn ask(ask: &ApprovalAsk, about: &str) -> Decision {
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

impl Observer for Terminal {
    fn started(&mut self, name: &ActionName, container: Option<&str>) {
        match container {
            Some(c) => self.line(&format!("==> {name} started (container {c})")),
            None => self.line(&format!("==> {name} started")),
        }
        if let Mode::Live { multi, bars, style } = &mut self.mode {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(name.to_string());
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(200));
            bars.insert(name.clone(), bar);
        }
    }

    fn log(&mut self, name: &ActionName, line: &str) {
        let prefix = name.to_string();
        self.line(&format!("{prefix:<width$} | {line}", width = self.width));
        if let Mode::Live { bars, .. } = &self.mode
            && let Some(bar) = bars.get(name)
            && !line.trim().is_empty()
        {
            bar.set_message(line.trim().to_string());
        }
    }

    fn finished(&mut self, end: &ActionEnd) {
        if let Mode::Live { multi, bars, .. } = &mut self.mode
            && let Some(bar) = bars.remove(&end.name)
        {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
        // A kept container is named in the log, and again after the table.
        let text = if end.succeeded {
            format!("==> {} succeeded", end.name)
        } else if end.stopped {
            format!("==> {} stopped: {}", end.name, end.message)
        } else {
            match end.exit_code {
                Some(code) if code > 0 => {
                    format!("==> {} failed (exit {code}): {}", end.name, end.message)
                }
                _ => format!("==> {} failed: {}", end.name, end.message),
            }
        };
        self.line(&text);
        for line in end
            .tests
            .iter()
            .flat_map(crate::commands::tests_view::lines)
        {
            self.line(&format!("    {line}"));
        }
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
                "no terminal to ask on (--approve approves); deploy actions after it do not run"
                    .to_string(),
            );
        }
        match &self.mode {
            // The live lines stand still while the question is asked.
            Mode::Live { multi, .. } => multi.suspend(|| Self::ask(ask, &about)),
            Mode::Plain { .. } => Self::ask(ask, &about),
        }
    }
}
