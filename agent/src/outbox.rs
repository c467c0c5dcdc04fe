//! The durable outbox: an attempt's result is written to the state dir (and
//! synced) before it is sent, and removed only when the coordinator
//! acknowledges it, so neither a coordinator failover nor an agent restart
//! loses a finished result. The coordinator drops duplicates by fencing epoch.

use std::io::Write as _;
use std::path::PathBuf;

use ferry_proto as pb;
use prost::Message as _;

pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn open(dir: PathBuf) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(&dir)?;
        Ok(Outbox { dir })
    }

    fn path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("{epoch}.result"))
    }

    /// Durably records a result before it is sent.
    pub fn put(&self, result: &pb::internal::AttemptResult) -> std::io::Result<()> {
        let epoch = result.attempt.as_ref().map_or(0, |a| a.epoch);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&result.encode_to_vec())?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(epoch)).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn remove(&self, epoch: u64) {
        let _ = std::fs::remove_file(self.path(epoch));
    }

    /// Results written before a restart and never acknowledged.
    pub fn load(&self) -> Vec<pb::internal::AttemptResult> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "result"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| pb::internal::AttemptResult::decode(b.as_slice()).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_until_removed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let out = Outbox::open(dir.path().to_path_buf())?;
        let r = pb::internal::AttemptResult {
            attempt: Some(pb::internal::AttemptRef {
                attempt_id: "x".into(),
                epoch: 7,
            }),
            success: true,
            ..Default::default()
        };
        out.put(&r)?;
        let again = Outbox::open(dir.path().to_path_buf())?;
        assert_eq!(again.load(), vec![r]);
        again.remove(7);
        assert!(again.load().is_empty());
        Ok(())
    }
}
