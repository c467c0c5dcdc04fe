//! The web console's logins, in the replicated state: one-time login links
//! an operator asks for with `ferry ui` (authenticated by their certificate),
//! and the browser sessions those links open. Only sha256 hashes of the
//! secrets are kept, so the log and snapshots hold nothing a browser could
//! present. A session survives a leader failover because it is here; it is
//! bound to the operator, whose roles are checked on every request as for
//! gRPC. Expired links and sessions are dropped when a new session opens
//! (by the command's time: `apply` reads no clock).

use crate::reason::Reason;
use serde::{Deserialize, Serialize};

use super::ClusterState;
use super::apply::{Applied, Output, Rejection};

/// Links and sessions kept at most (the oldest go first).
pub const CONSOLE_RECORDS_MAX: usize = 10_000;

/// Links, and sessions, one operator holds at most (their oldest go first):
/// nobody can push everyone else's out by asking for links in a loop.
pub const CONSOLE_RECORDS_PER_OPERATOR: usize = 32;

/// A login link not used yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginLink {
    pub operator: String,
    pub expires_at: i64,
    /// The certificate `ferry ui` was called with (sha256 fingerprint).
    #[serde(default)]
    pub cert: Option<String>,
}

/// A browser session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub operator: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// The certificate behind the link that opened it: once revoked, the
    /// session is over (a stolen certificate's sessions die with it).
    #[serde(default)]
    pub cert: Option<String>,
}

impl ClusterState {
    /// `ferry ui`: a link for `operator` (their role was checked by `authorize`).
    pub(super) fn create_login_link(&mut self, hash: String, link: LoginLink) -> Applied {
        if self.login_links.contains_key(&hash) {
            return Err(Rejection::AlreadyExists("login link".into()));
        }
        let operator = link.operator.clone();
        self.login_links.insert(hash, link);
        super::keep_latest_of(
            &mut self.login_links,
            CONSOLE_RECORDS_PER_OPERATOR,
            |l| l.expires_at,
            |l| l.operator == operator,
        );
        super::keep_latest(&mut self.login_links, CONSOLE_RECORDS_MAX, |l| l.expires_at);
        Ok(Output::None)
    }

    /// Opening a link: it is used up, and a session for its operator begins.
    pub(super) fn open_session(
        &mut self,
        link: &str,
        session: String,
        expires_at: i64,
        at: i64,
    ) -> Applied {
        self.login_links.retain(|_, l| l.expires_at >= at);
        self.console_sessions.retain(|_, s| s.expires_at >= at);
        let Some(found) = self.login_links.get(link) else {
            return Err(Rejection::denied(
                Reason::BadLoginLink,
                "this login link is unknown, used or expired; run `ferry ui` for a new one",
            ));
        };
        if self.console_sessions.contains_key(&session) {
            return Err(Rejection::AlreadyExists("console session".into()));
        }
        if found.cert.as_deref().is_some_and(|fp| self.is_revoked(fp)) {
            return Err(Rejection::denied(
                Reason::Unauthenticated,
                "the certificate this login link was made with is revoked",
            ));
        }
        let operator = found.operator.clone();
        let cert = found.cert.clone();
        self.login_links.remove(link);
        self.console_sessions.insert(
            session,
            ConsoleSession {
                operator: operator.clone(),
                created_at: at,
                expires_at,
                cert,
            },
        );
        super::keep_latest_of(
            &mut self.console_sessions,
            CONSOLE_RECORDS_PER_OPERATOR,
            |s| s.expires_at,
            |s| s.operator == operator,
        );
        super::keep_latest(&mut self.console_sessions, CONSOLE_RECORDS_MAX, |s| {
            s.expires_at
        });
        Ok(Output::None)
    }

    /// `Log out`, or an admin revoking a session.
    pub(super) fn end_session(&mut self, session: &str) -> Applied {
        self.console_sessions
            .remove(session)
            .map(|_| Output::None)
            .ok_or_else(|| Rejection::NotFound("console session".into()))
    }

    /// The operator a session acts for, while it lasts at `now` and the
    /// certificate behind it is not revoked.
    pub fn session_operator(&self, session: &str, now: i64) -> Option<&str> {
        self.console_sessions
            .get(session)
            .filter(|s| s.expires_at >= now)
            .filter(|s| !s.cert.as_deref().is_some_and(|fp| self.is_revoked(fp)))
            .map(|s| s.operator.as_str())
    }
}
