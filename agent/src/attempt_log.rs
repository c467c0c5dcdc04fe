//! One attempt's log: every byte, secrets masked first, goes to the log
//! file in the state dir and to the live stream, numbered by its offset in
//! the log. After a reconnect the session replays the file's tail
//! ([`tail_of`]) at its offset, and the coordinator skips what it already
//! has. When the attempt ends the file becomes a blob in the store. Nothing
//! unmasked is ever written or sent from here.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use ferry_engine::runner::LogSink;
use ferry_engine::store::{Blob, Store};
use ferry_pipeline::mask::Masker;

/// Most of a running attempt's log replayed to a coordinator after a reconnect.
pub const REPLAY_LIMIT: u64 = 4 * 1024 * 1024;

/// Where live log bytes go, with their offset in the log.
pub type Live = Box<dyn FnMut(u64, Vec<u8>) + Send>;

/// Writes an attempt's output to its log file and to the live stream.
pub struct AttemptLog {
    path: PathBuf,
    file: Option<std::fs::File>,
    live: Live,
    /// Bytes written so far: the offset of the next chunk.
    offset: u64,
    /// Replaces the values of the attempt's secrets with `***`.
    masker: Masker,
}

impl LogSink for AttemptLog {
    fn write(&mut self, bytes: &[u8]) {
        let masked = self.masker.push(bytes);
        self.emit(masked);
    }
}

impl AttemptLog {
    /// A new, empty log at `path`. Without a file (it could not be created)
    /// the log still streams live.
    pub fn create(path: PathBuf, masker: Masker, live: Live) -> AttemptLog {
        let file = match std::fs::File::create(&path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot create the attempt's log file");
                None
            }
        };
        AttemptLog {
            path,
            file,
            live,
            offset: 0,
            masker,
        }
    }

    /// `text` with the attempt's secrets masked.
    pub fn mask(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.masker.mask(text.as_bytes())).into_owned()
    }

    fn emit(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(&bytes);
        }
        let len = bytes.len() as u64;
        (self.live)(self.offset, bytes);
        self.offset += len;
    }

    /// Writes out a partial last line held back by the masker, closes the
    /// file and moves it into `store`; None when there is no log to keep.
    pub fn finish(mut self, store: &Store) -> Option<Blob> {
        let rest = self.masker.finish();
        self.emit(rest);
        drop(self.file.take()?);
        let stored = std::fs::File::open(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|f| store.put_reader(f).map_err(|e| e.to_string()));
        match stored {
            Ok(b) => {
                let _ = std::fs::remove_file(&self.path);
                Some(b)
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot store the attempt's log");
                None
            }
        }
    }
}

/// The last [`REPLAY_LIMIT`] bytes of a log file and their offset; None
/// when there is nothing to replay.
pub fn tail_of(path: &Path) -> Option<(u64, Vec<u8>)> {
    tail_within(path, REPLAY_LIMIT)
}

fn tail_within(path: &Path, limit: u64) -> Option<(u64, Vec<u8>)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(limit);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).ok()?;
    (!data.is_empty()).then_some((start, data))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    type Chunks = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

    fn log_at(path: PathBuf, secrets: &[&str]) -> (AttemptLog, Chunks) {
        let chunks = Chunks::default();
        let sent = chunks.clone();
        let masker = Masker::new(secrets.iter().map(|s| s.as_bytes().to_vec()));
        let live: Live = Box::new(move |offset, data| {
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((offset, data));
        });
        (AttemptLog::create(path, masker, live), chunks)
    }

    fn taken(chunks: &Chunks) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut *chunks.lock().unwrap_or_else(|p| p.into_inner()))
    }

    #[test]
    fn live_chunks_carry_their_offsets_and_match_the_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("7.log");
        let (mut log, chunks) = log_at(path.clone(), &[]);
        log.write(b"$ make\n");
        log.write(b"");
        log.write(b"built\n");
        assert_eq!(
            taken(&chunks),
            vec![(0, b"$ make\n".to_vec()), (7, b"built\n".to_vec())]
        );
        assert_eq!(std::fs::read(&path)?, b"$ make\nbuilt\n");
        Ok(())
    }

    #[test]
    fn secrets_are_masked_before_the_file_and_the_stream() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("7.log");
        let (mut log, chunks) = log_at(path.clone(), &["hunter2"]);
        // A value split across writes is caught: the partial line waits.
        log.write(b"token hun");
        assert!(taken(&chunks).is_empty());
        log.write(b"ter2 used\nlast hunter2");
        assert_eq!(taken(&chunks), vec![(0, b"token *** used\n".to_vec())]);
        assert_eq!(log.mask("failed with hunter2"), "failed with ***");
        let store = Store::open(dir.path().join("store"))?;
        let blob = log.finish(&store).ok_or("no log blob")?;
        // The held-back last line goes out on finish, at its offset.
        assert_eq!(taken(&chunks), vec![(15, b"last ***".to_vec())]);
        assert_eq!(blob.size, 23);
        let stored = std::fs::read(store.path(&blob.digest).ok_or("blob missing")?)?;
        assert_eq!(stored, b"token *** used\nlast ***");
        assert!(!path.exists(), "the log file moves into the store");
        Ok(())
    }

    #[test]
    fn without_a_file_the_log_still_streams_and_keeps_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (mut log, chunks) = log_at(dir.path().join("no/such/dir/7.log"), &[]);
        log.write(b"line\n");
        assert_eq!(taken(&chunks), vec![(0, b"line\n".to_vec())]);
        let store = Store::open(dir.path().join("store"))?;
        assert!(log.finish(&store).is_none());
        Ok(())
    }

    #[test]
    fn the_replay_is_the_tail_at_its_offset() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("7.log");
        assert_eq!(tail_of(&path), None, "no file yet");
        std::fs::write(&path, b"")?;
        assert_eq!(tail_of(&path), None, "nothing written yet");
        std::fs::write(&path, b"0123456789")?;
        assert_eq!(tail_of(&path), Some((0, b"0123456789".to_vec())));
        assert_eq!(tail_within(&path, 4), Some((6, b"6789".to_vec())));
        assert_eq!(tail_within(&path, 10), Some((0, b"0123456789".to_vec())));
        Ok(())
    }
}
