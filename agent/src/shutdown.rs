//! How the agent stops. The process says what it wants through a
//! [`Shutdown`] watch: `Drain` finishes the running attempts and delivers
//! their results before the agent exits; `Cancel` (or a second signal, or the
//! process dropping the sender) cancels running attempts without reporting
//! them, so the coordinator re-runs them elsewhere. This module only decides
//! and waits; it never touches the session or an attempt itself, only the
//! [`Work`] it is given.

use std::time::Duration;

use tokio::sync::watch;

/// What the process asks of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shutdown {
    /// Keep running: take work and run it.
    #[default]
    Run,
    /// Finish running attempts, deliver their results, take no new work, exit.
    Drain,
    /// Cancel running attempts (unreported, so they are re-run elsewhere) and exit.
    Cancel,
}

/// The cancellation reason of attempts stopped because the agent exits:
/// they end without a result, so the coordinator gives them to another agent.
pub const SHUTDOWN_REASON: &str = "agent shutting down";

/// How often a draining agent looks whether its work is done.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// How long cancelled attempts get to clean up (remove their containers)
/// before the agent exits anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// What stopping needs from the running agent.
pub trait Work {
    /// Attempts still running.
    fn running(&self) -> usize;
    /// Results not yet acknowledged by a coordinator.
    fn unacknowledged(&self) -> usize;
    /// Takes no new work from now on, and says so in heartbeats.
    fn start_draining(&self);
    /// Asks every running attempt to stop, with this reason.
    fn cancel_all(&self, reason: &str);
}

/// How the agent's work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every attempt finished and every result was acknowledged.
    Drained,
    /// Running attempts were cancelled (and had up to the grace period to
    /// clean up).
    Cancelled,
}

/// Waits until `shutdown` asks the agent to stop, then drains or cancels
/// `work` as asked; returns when the agent may exit.
pub async fn stop(work: &impl Work, shutdown: &mut watch::Receiver<Shutdown>) -> Stopped {
    stop_within(work, shutdown, CANCEL_GRACE).await
}

async fn stop_within(
    work: &impl Work,
    shutdown: &mut watch::Receiver<Shutdown>,
    grace: Duration,
) -> Stopped {
    let mut mode = Shutdown::Run;
    while mode == Shutdown::Run {
        mode = if shutdown.changed().await.is_err() {
            Shutdown::Cancel
        } else {
            *shutdown.borrow()
        };
    }
    if mode == Shutdown::Drain && drain(work, shutdown).await {
        return Stopped::Drained;
    }
    work.cancel_all(SHUTDOWN_REASON);
    let deadline = tokio::time::Instant::now() + grace;
    while work.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Stopped::Cancelled
}

/// Waits for `work` to settle; false when cancelling was asked for first.
async fn drain(work: &impl Work, shutdown: &mut watch::Receiver<Shutdown>) -> bool {
    work.start_draining();
    tracing::info!(
        running = work.running(),
        "draining: finishing running actions; signal again to cancel them"
    );
    loop {
        if work.running() == 0 && work.unacknowledged() == 0 {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() == Shutdown::Cancel {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Work whose attempts end when cancelled, unless `stubborn`.
    #[derive(Default)]
    struct FakeWork {
        running: AtomicUsize,
        unacked: AtomicUsize,
        draining: AtomicBool,
        stubborn: bool,
        cancelled: Mutex<Vec<String>>,
    }

    impl Work for FakeWork {
        fn running(&self) -> usize {
            self.running.load(Ordering::SeqCst)
        }
        fn unacknowledged(&self) -> usize {
            self.unacked.load(Ordering::SeqCst)
        }
        fn start_draining(&self) {
            self.draining.store(true, Ordering::SeqCst);
        }
        fn cancel_all(&self, reason: &str) {
            self.cancelled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(reason.to_string());
            if !self.stubborn {
                self.running.store(0, Ordering::SeqCst);
            }
        }
    }

    fn busy() -> std::sync::Arc<FakeWork> {
        let work = FakeWork::default();
        work.running.store(2, Ordering::SeqCst);
        work.unacked.store(1, Ordering::SeqCst);
        std::sync::Arc::new(work)
    }

    fn cancels(work: &FakeWork) -> Vec<String> {
        work.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    #[tokio::test]
    async fn drain_waits_for_running_work_and_unacknowledged_results() {
        let work = busy();
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        // Run again is no request to stop.
        tx.send_replace(Shutdown::Run);
        tx.send_replace(Shutdown::Drain);
        let finisher = {
            let work = work.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(work.draining.load(Ordering::SeqCst));
                work.running.store(0, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(250)).await;
                work.unacked.store(0, Ordering::SeqCst);
            })
        };
        assert_eq!(stop(&*work, &mut rx).await, Stopped::Drained);
        assert!(finisher.await.is_ok());
        assert!(cancels(&work).is_empty());
    }

    #[tokio::test]
    async fn a_cancel_during_a_drain_cancels_the_running_attempts() {
        let work = busy();
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        tx.send_replace(Shutdown::Drain);
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A second Drain changes nothing; Cancel does.
            tx.send_replace(Shutdown::Drain);
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send_replace(Shutdown::Cancel);
            tx
        });
        assert_eq!(stop(&*work, &mut rx).await, Stopped::Cancelled);
        assert!(canceller.await.is_ok());
        assert!(work.draining.load(Ordering::SeqCst));
        assert_eq!(cancels(&work), vec![SHUTDOWN_REASON.to_string()]);
        assert_eq!(work.running(), 0);
    }

    #[tokio::test]
    async fn cancel_does_not_drain_first() {
        let work = busy();
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        tx.send_replace(Shutdown::Cancel);
        assert_eq!(stop(&*work, &mut rx).await, Stopped::Cancelled);
        assert!(!work.draining.load(Ordering::SeqCst));
        assert_eq!(cancels(&work), vec![SHUTDOWN_REASON.to_string()]);
    }

    #[tokio::test]
    async fn a_dropped_sender_cancels_while_running_and_while_draining() {
        let work = busy();
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        drop(tx);
        assert_eq!(stop(&*work, &mut rx).await, Stopped::Cancelled);
        assert!(!work.draining.load(Ordering::SeqCst));

        let work = busy();
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        tx.send_replace(Shutdown::Drain);
        let dropper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(tx);
        });
        assert_eq!(stop(&*work, &mut rx).await, Stopped::Cancelled);
        assert!(dropper.await.is_ok());
        assert!(work.draining.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn attempts_that_ignore_the_cancel_get_only_the_grace_period() {
        let work = FakeWork {
            stubborn: true,
            ..FakeWork::default()
        };
        work.running.store(1, Ordering::SeqCst);
        let (tx, mut rx) = watch::channel(Shutdown::Run);
        tx.send_replace(Shutdown::Cancel);
        let stopped = stop_within(&work, &mut rx, Duration::from_millis(300)).await;
        assert_eq!(stopped, Stopped::Cancelled);
        assert_eq!(work.running(), 1);
    }
}
