//! Service output in the action's log: the attempt's one log sink shared
//! between the action's commands and its services' log followers (all in
//! the attempt's own task), and each service's output cut into whole lines
//! prefixed with its name (`[db] ...`). The sink masks secrets, so service
//! lines are masked exactly as the action's own output is. Nothing here
//! talks to Docker except [`Executor::follow_logs`], which reads one
//! service's stream to its end.

use std::sync::Mutex;

use bollard::query_parameters::LogsOptions;
use futures::StreamExt;

use super::Executor;
use crate::runner::LogSink;

/// Longest line passed on as one; a longer one is cut.
const MAX_LINE: usize = 64 * 1024;

/// The attempt's log, written by the action's commands and by its services'
/// followers; they run in one task, so the lock is never held across an
/// await and never contended for long.
pub(super) struct SharedLog<'l>(Mutex<&'l mut dyn LogSink>);

impl<'l> SharedLog<'l> {
    pub(super) fn new(log: &'l mut dyn LogSink) -> SharedLog<'l> {
        SharedLog(Mutex::new(log))
    }

    pub(super) fn write(&self, bytes: &[u8]) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.write(bytes);
    }
}

/// A handle to the shared log where a `&mut dyn LogSink` is wanted.
pub(super) struct LogHandle<'s, 'l>(pub(super) &'s SharedLog<'l>);

impl LogSink for LogHandle<'_, '_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

/// One service's output as whole lines, each prefixed with its name.
pub(super) struct Prefixed {
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl Prefixed {
    pub(super) fn new(service: &str) -> Prefixed {
        Prefixed {
            prefix: format!("[{service}] ").into_bytes(),
            partial: Vec::new(),
        }
    }

    /// The complete lines `bytes` ends, prefixed; a partial last line waits.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.line(&line[..line.len() - 1], &mut out);
        }
        while self.partial.len() > MAX_LINE {
            let line: Vec<u8> = self.partial.drain(..MAX_LINE).collect();
            self.line(&line, &mut out);
        }
        out
    }

    /// Whatever is still held back, as a last line.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, &mut out);
        }
        out
    }

    fn line(&self, line: &[u8], out: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

impl Executor {
    /// Passes service `service`'s output (container `container`, stdout and
    /// stderr, from its start) to `log` line by line until its stream ends:
    /// when the container stops or is removed.
    pub(super) async fn follow_logs(&self, container: &str, service: &str, log: &SharedLog<'_>) {
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut lines = Prefixed::new(service);
        while let Some(Ok(chunk)) = stream.next().await {
            let out = lines.push(&chunk.into_bytes());
            if !out.is_empty() {
                log.write(&out);
            }
        }
        let out = lines.finish();
        if !out.is_empty() {
            log.write(&out);
        }
    }

    /// The last `n` lines service container `container` printed, each at
    /// most 200 characters; "" when there are none or they cannot be read.
    pub(super) async fn last_lines(&self, container: &str, n: usize) -> String {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: n.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(container, Some(opts));
        let mut bytes = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            bytes.extend_from_slice(&chunk.into_bytes());
            if bytes.len() > n * MAX_LINE {
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text
            .lines()
            .rev()
            .take(n)
            .map(|l| l.chars().take(200).collect())
            .collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_output_becomes_whole_prefixed_lines() {
        let mut p = Prefixed::new("db");
        assert_eq!(p.push(b"ready to acc"), b"");
        assert_eq!(
            p.push(b"ept\r\nsecond\nthi"),
            b"[db] ready to accept\n[db] second\n".to_vec()
        );
        assert_eq!(p.finish(), b"[db] thi\n".to_vec());
        assert_eq!(p.finish(), b"");
        let long = vec![b'x'; MAX_LINE + 10];
        let out = p.push(&long);
        assert_eq!(out.len(), "[db] ".len() + MAX_LINE + 1);
        assert_eq!(p.finish().len(), "[db] ".len() + 10 + 1);
    }

    struct Collect(Vec<u8>);

    impl LogSink for Collect {
        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    #[test]
    fn the_shared_log_takes_writes_from_every_handle() {
        let mut sink = Collect(Vec::new());
        {
            let shared = SharedLog::new(&mut sink);
            shared.write(b"a\n");
            let mut handle = LogHandle(&shared);
            handle.write(b"b\n");
        }
        assert_eq!(sink.0, b"a\nb\n");
    }
}
