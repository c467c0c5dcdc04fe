//! Leader-local, unreplicated runtime state: which agents hold an open session
//! right now (and how to reach them), and the live log lines of running
//! attempts. Losing it on failover is fine: agents reconnect and re-register,
//! and final logs live on the agents as content-addressed blobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferry_proto as pb;
use tokio::sync::{broadcast, mpsc, watch};

/// The sending half of one agent's session stream.
pub type SessionTx = mpsc::Sender<Result<pb::internal::CoordinatorMessage, tonic::Status>>;

#[derive(Clone)]
pub struct Session {
    pub id: u64,
    pub tx: SessionTx,
    pub last_seen: Instant,
    /// False once the agent said it is shutting down.
    pub accepting: bool,
}

/// Open agent sessions, by agent name.
#[derive(Clone)]
pub struct AgentHub {
    inner: Arc<Mutex<BTreeMap<String, Session>>>,
    /// When each agent was last heard from on this leader (kept after it disconnects).
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    changed: watch::Sender<u64>,
    /// Replicas this leader asked for, (agent, digest): only those may be
    /// reported `Held` (an agent cannot make itself a holder of a blob it was
    /// never asked to fetch, and so be handed it as an input source).
    replicas_asked: Arc<Mutex<std::collections::HashSet<(String, String)>>>,
}

impl Default for AgentHub {
    fn default() -> Self {
        AgentHub {
            inner: Arc::default(),
            seen: Arc::default(),
            changed: watch::channel(0).0,
            replicas_asked: Arc::default(),
        }
    }
}

/// Outstanding replica requests remembered at most (a leader change forgets them all).
const MAX_REPLICAS_ASKED: usize = 100_000;

impl AgentHub {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `agent` was asked to fetch a replica of `digest`.
    pub fn ask_replica(&self, agent: &str, digest: &str) {
        let mut asked = self
            .replicas_asked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if asked.len() >= MAX_REPLICAS_ASKED {
            asked.clear();
        }
        asked.insert((agent.to_string(), digest.to_string()));
    }

    /// Whether `agent` was asked for `digest` (and forgets the request).
    pub fn take_replica(&self, agent: &str, digest: &str) -> bool {
        self.replicas_asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(agent.to_string(), digest.to_string()))
    }

    pub fn connect(&self, name: &str, session: Session) {
        self.heard(name);
        self.lock().insert(name.to_string(), session);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Removes the session unless a newer one replaced it.
    pub fn disconnect(&self, name: &str, id: u64) {
        let mut map = self.lock();
        if map.get(name).is_some_and(|s| s.id == id) {
            map.remove(name);
        }
        drop(map);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Drops any session of `name` (it was removed): its stream ends.
    pub fn disconnect_all(&self, name: &str) {
        self.lock().remove(name);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn touch(&self, name: &str) {
        self.heard(name);
        if let Some(s) = self.lock().get_mut(name) {
            s.last_seen = Instant::now();
        }
    }

    fn heard(&self, name: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Instant::now());
    }

    /// When this leader last heard from `name`, connected or not.
    pub fn heard_at(&self, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }

    /// The agents this leader heard from within `fresh`, connected or not.
    pub fn heard_within(&self, fresh: std::time::Duration) -> std::collections::BTreeSet<String> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, at)| at.elapsed() < fresh)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Leadership changed: forget what an earlier term heard.
    pub fn reset_seen(&self) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn set_accepting(&self, name: &str, accepting: bool) {
        if let Some(s) = self.lock().get_mut(name) {
            s.accepting = accepting;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Connected agents that take new work and were heard from within `fresh`
    /// (a connected agent that went silent is not given more).
    pub fn accepting(&self, fresh: std::time::Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.accepting && s.last_seen.elapsed() < fresh)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Session> {
        self.lock().get(name).cloned()
    }

    pub fn connected(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn last_seen(&self, name: &str) -> Option<Instant> {
        self.lock().get(name).map(|s| s.last_seen)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Sends a message to a connected agent; false if it is not connected.
    pub async fn send(&self, name: &str, msg: pb::internal::CoordinatorMessage) -> bool {
        let Some(s) = self.get(name) else {
            return false;
        };
        s.tx.send(Ok(msg)).await.is_ok()
    }
}

/// Most bytes of live log kept in memory per attempt.
const LIVE_LIMIT: usize = 4 * 1024 * 1024;
/// Attempts whose live logs are kept after they end.
const KEEP_FINISHED: usize = 256;

struct LiveLog {
    data: Vec<u8>,
    dropped: usize,
    /// Total bytes received so far (the offset the next chunk must start at).
    total: u64,
    tx: broadcast::Sender<Vec<u8>>,
    closed: bool,
}

/// Live log lines of running attempts, by fencing epoch.
#[derive(Clone, Default)]
pub struct LogHub {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    logs: HashMap<u64, LiveLog>,
    finished: VecDeque<u64>,
}

impl LogHub {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(inner: &mut LogInner, epoch: u64) -> &mut LiveLog {
        inner.logs.entry(epoch).or_insert_with(|| LiveLog {
            data: Vec::new(),
            dropped: 0,
            total: 0,
            tx: broadcast::channel(1024).0,
            closed: false,
        })
    }

    /// Adds the bytes of `epoch`'s log that start at `offset`; what was
    /// received before (a replay after a reconnect) is skipped, a gap is noted.
    pub fn append(&self, epoch: u64, offset: u64, bytes: &[u8]) {
        let mut inner = self.lock();
        let log = Self::entry(&mut inner, epoch);
        let end = offset.saturating_add(bytes.len() as u64);
        if end <= log.total {
            return;
        }
        let bytes = if offset < log.total {
            &bytes[(log.total - offset) as usize..]
        } else {
            bytes
        };
        if offset > log.total {
            let note = format!("[ferry: {} log bytes missing here]\n", offset - log.total);
            log.data.extend_from_slice(note.as_bytes());
        }
        log.total = end;
        log.data.extend_from_slice(bytes);
        if log.data.len() > LIVE_LIMIT {
            let cut = log.data.len() - LIVE_LIMIT;
            log.data.drain(..cut);
            log.dropped += cut;
        }
        let _ = log.tx.send(bytes.to_vec());
    }

    /// Marks an attempt's live log complete; wakes followers.
    pub fn close(&self, epoch: u64) {
        let mut inner = self.lock();
        let log = Self::entry(&mut inner, epoch);
        if log.closed {
            return;
        }
        log.closed = true;
        // Dropping the sender ends every follower's stream.
        log.tx = broadcast::channel(1).0;
        inner.finished.push_back(epoch);
        while inner.finished.len() > KEEP_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.logs.remove(&old);
            }
        }
    }

    /// What is buffered so far, whether the attempt ended, and a receiver for more.
    pub fn subscribe(&self, epoch: u64) -> (Vec<u8>, bool, broadcast::Receiver<Vec<u8>>) {
        let mut inner = self.lock();
        let log = Self::entry(&mut inner, epoch);
        let mut head = Vec::new();
        if log.dropped > 0 {
            head.extend_from_slice(
                format!(
                    "[ferry: {} earlier bytes not kept in memory]\n",
                    log.dropped
                )
                .as_bytes(),
            );
        }
        head.extend_from_slice(&log.data);
        (head, log.closed, log.tx.subscribe())
    }

    /// Forgets the logs of attempts still running: this member stopped
    /// leading, so their lines now go to the new leader. Followers' streams
    /// end (their sender is dropped) with the log not closed, which
    /// [`LogHub::is_closed`] tells them, so they can follow it again there.
    pub fn forget_open(&self) -> usize {
        let mut inner = self.lock();
        let before = inner.logs.len();
        inner.logs.retain(|_, l| l.closed);
        before - inner.logs.len()
    }

    /// Whether `epoch`'s log was closed (None: not held here).
    pub fn is_closed(&self, epoch: u64) -> Option<bool> {
        self.lock().logs.get(&epoch).map(|l| l.closed)
    }

    /// The complete live log of an ended attempt, if still in memory and whole.
    pub fn complete(&self, epoch: u64) -> Option<Vec<u8>> {
        let inner = self.lock();
        inner
            .logs
            .get(&epoch)
            .filter(|l| l.closed && l.dropped == 0)
            .map(|l| l.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(hub: &LogHub, epoch: u64) -> String {
        String::from_utf8_lossy(&hub.subscribe(epoch).0).into_owned()
    }

    #[test]
    fn replayed_bytes_are_skipped_and_gaps_are_noted() {
        let hub = LogHub::default();
        hub.append(1, 0, b"hello ");
        // A reconnect replays from an earlier offset: only the new tail counts.
        hub.append(1, 0, b"hello world\n");
        hub.append(1, 3, b"lo");
        assert_eq!(text(&hub, 1), "hello world\n");
        // Bytes lost in between are said to be missing, not silently joined.
        hub.append(1, 20, b"later\n");
        assert_eq!(
            text(&hub, 1),
            "hello world\n[ferry: 8 log bytes missing here]\nlater\n"
        );
        // An offset at the end of the range cannot overflow.
        hub.append(1, u64::MAX, b"x");
        assert!(text(&hub, 1).ends_with('x'));
    }

    #[test]
    fn followers_get_what_is_buffered_then_new_bytes_then_the_end() {
        let hub = LogHub::default();
        hub.append(7, 0, b"one\n");
        let (head, closed, mut rx) = hub.subscribe(7);
        assert_eq!((head.as_slice(), closed), (&b"one\n"[..], false));
        hub.append(7, 4, b"two\n");
        assert_eq!(rx.try_recv().ok().as_deref(), Some(&b"two\n"[..]));
        assert_eq!(hub.complete(7), None, "not complete while running");
        hub.close(7);
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert_eq!(hub.complete(7).as_deref(), Some(&b"one\ntwo\n"[..]));
        hub.close(7);
        assert!(hub.subscribe(7).1, "closing twice is harmless");
    }

    #[test]
    fn only_the_newest_bytes_are_kept_in_memory() {
        let hub = LogHub::default();
        let chunk = vec![b'a'; LIVE_LIMIT / 2 + 1];
        hub.append(3, 0, &chunk);
        hub.append(3, chunk.len() as u64, &chunk);
        let (head, _, _) = hub.subscribe(3);
        let note = "[ferry: 2 earlier bytes not kept in memory]\n";
        assert!(head.starts_with(note.as_bytes()));
        assert_eq!(head.len(), note.len() + LIVE_LIMIT);
        hub.close(3);
        assert_eq!(hub.complete(3), None, "a log cut in memory is not whole");
    }

    #[test]
    fn finished_logs_are_forgotten_oldest_first() {
        let hub = LogHub::default();
        for epoch in 0..=KEEP_FINISHED as u64 {
            hub.append(epoch, 0, b"x");
            hub.close(epoch);
        }
        assert_eq!(hub.complete(0), None);
        assert_eq!(hub.complete(1).as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn a_member_that_stops_leading_ends_open_logs_as_not_closed() {
        let hub = LogHub::default();
        hub.append(1, 0, b"running\n");
        hub.append(2, 0, b"done\n");
        hub.close(2);
        let (_, closed, mut rx) = hub.subscribe(1);
        assert!(!closed);
        assert_eq!(hub.forget_open(), 1);
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert_eq!(hub.is_closed(1), None, "not held here any more");
        assert_eq!(hub.is_closed(2), Some(true));
        assert_eq!(hub.complete(2).as_deref(), Some(&b"done\n"[..]));
    }
}
