//! The leader's session table, in memory: which node holds which session, when each was
//! last heard from. Nothing here is replicated: a new leader starts with an empty table and
//! the agents register again (see the `liveness` module for the grace it gives them).
//!
//! Pure bookkeeping: the caller passes the time in, so tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tokio::sync::watch;

use super::error::DispatchError;

/// How many ended sessions are remembered, to tell an agent why its session is unknown.
const ENDED_MEMORY: usize = 4096;

/// The session timings a leader hands to agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// How often agents heartbeat. Default 1 s.
    pub heartbeat_period: Duration,
    /// How many periods without a heartbeat mark a node down. Default 3.
    pub missed_heartbeats: u32,
    /// A live node's `last_seen` is committed to Raft only once it is this much older than
    /// the last heartbeat (heartbeats themselves stay in the leader's memory). Default 30 s.
    pub last_seen_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            heartbeat_period: Duration::from_secs(1),
            missed_heartbeats: 3,
            last_seen_interval: Duration::from_secs(30),
        }
    }
}

impl SessionSettings {
    /// How long a node may stay silent before it is marked down.
    pub fn deadline(&self) -> Duration {
        self.heartbeat_period.saturating_mul(self.missed_heartbeats)
    }

    /// Checks the settings; names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let ms = self.heartbeat_period.as_millis();
        if ms == 0 || ms > u128::from(u32::MAX) {
            return Err(format!(
                "the heartbeat period must be between 1 ms and {} ms, not {:?}",
                u32::MAX,
                self.heartbeat_period
            ));
        }
        if self.missed_heartbeats == 0 {
            return Err("missed heartbeats must be at least 1".to_owned());
        }
        Ok(())
    }

    /// The period in whole milliseconds, for the wire.
    pub(crate) fn period_ms(&self) -> u32 {
        u32::try_from(self.heartbeat_period.as_millis()).unwrap_or(u32::MAX)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The node registered again.
    Replaced,
    /// Its heartbeats stopped for longer than the deadline.
    Expired,
    /// This member stopped being the leader.
    LeadershipLost,
    /// The node's record was removed (`RemoveNode`).
    Removed,
}

impl Ended {
    fn words(self) -> &'static str {
        match self {
            Ended::Replaced => "replaced by a newer registration of the node",
            Ended::Expired => "expired: its heartbeats stopped and the node was marked down",
            Ended::LeadershipLost => "this controller stopped being the leader",
            Ended::Removed => "its node was removed from the cluster",
        }
    }

    /// The error a call of an ended session gets.
    pub(crate) fn error(self, session: &str) -> DispatchError {
        match self {
            Ended::LeadershipLost => DispatchError::Closed,
            _ => DispatchError::UnknownSession {
                session: session.to_owned(),
                why: self.words(),
            },
        }
    }
}

/// One live session.
#[derive(Debug)]
struct Session {
    node: String,
    subnet: Ipv4Net,
    last_heartbeat: Instant,
    /// The same, in Unix nanoseconds (what `last_seen` records).
    last_heartbeat_wall: i128,
    ended: watch::Sender<Option<Ended>>,
}

/// What a call learns about its live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionView {
    /// The node's container subnet.
    pub subnet: Ipv4Net,
    /// Becomes `Some` when the session ends.
    pub ended: watch::Receiver<Option<Ended>>,
}

/// A session the table dropped because its node fell silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expired {
    /// The node.
    pub node: String,
    /// Its last heartbeat, Unix nanoseconds.
    pub last_heartbeat_wall: i128,
}

/// The sessions of the nodes, by session id and by node.
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    by_id: HashMap<String, Session>,
    by_node: HashMap<String, String>,
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<String>,
}

impl SessionTable {
    /// Starts session `id` for `node`, heard from `now`; an earlier session of the node ends.
    pub(crate) fn register(
        &mut self,
        id: String,
        node: &str,
        subnet: Ipv4Net,
        now: Instant,
        wall: i128,
    ) {
        if let Some(old) = self.by_node.remove(node) {
            self.end(&old, Ended::Replaced);
        }
        let (ended, _) = watch::channel(None);
        self.by_node.insert(node.to_owned(), id.clone());
        self.by_id.insert(
            id,
            Session {
                node: node.to_owned(),
                subnet,
                last_heartbeat: now,
                last_heartbeat_wall: wall,
                ended,
            },
        );
    }

    /// The live session `id` of `node`.
    pub(crate) fn get(&self, id: &str, node: &str) -> Result<SessionView, DispatchError> {
        let session = self.find(id, node)?;
        Ok(SessionView {
            subnet: session.subnet,
            ended: session.ended.subscribe(),
        })
    }

    /// Records a heartbeat of session `id` of `node`.
    pub(crate) fn heartbeat(
        &mut self,
        id: &str,
        node: &str,
        now: Instant,
        wall: i128,
    ) -> Result<(), DispatchError> {
        self.find(id, node)?;
        if let Some(session) = self.by_id.get_mut(id) {
            session.last_heartbeat = now;
            session.last_heartbeat_wall = wall;
        }
        Ok(())
    }

    fn find(&self, id: &str, node: &str) -> Result<&Session, DispatchError> {
        let Some(session) = self.by_id.get(id) else {
            return Err(match self.ended.get(id) {
                Some(ended) => ended.error(id),
                None => DispatchError::UnknownSession {
                    session: id.to_owned(),
                    why: "never registered with this leader (the leader may have changed)",
                },
            });
        };
        if session.node != node {
            return Err(DispatchError::NotYourSession {
                session: id.to_owned(),
                node: node.to_owned(),
            });
        }
        Ok(session)
    }

    /// Ends every session not heard from within `deadline` before `now`.
    pub(crate) fn expire(&mut self, now: Instant, deadline: Duration) -> Vec<Expired> {
        let silent: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_heartbeat) > deadline)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::with_capacity(silent.len());
        for id in silent {
            if let Some(session) = self.end(&id, Ended::Expired) {
                self.by_node.remove(&session.node);
                out.push(Expired {
                    node: session.node,
                    last_heartbeat_wall: session.last_heartbeat_wall,
                });
            }
        }
        out
    }

    /// Ends the sessions of `nodes` (their records were removed); answers the nodes whose
    /// session ended.
    pub(crate) fn end_nodes(&mut self, nodes: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for node in nodes {
            if let Some(id) = self.by_node.remove(node) {
                self.end(&id, Ended::Removed);
                out.push(node.clone());
            }
        }
        out
    }

    /// Ends every session (leadership lost).
    pub(crate) fn clear(&mut self) {
        let ids: Vec<String> = self.by_id.keys().cloned().collect();
        for id in ids {
            self.end(&id, Ended::LeadershipLost);
        }
        self.by_node.clear();
    }

    /// Every node with a live session, with its last heartbeat (Unix nanoseconds).
    pub(crate) fn live(&self) -> HashMap<String, i128> {
        self.by_id
            .values()
            .map(|s| (s.node.clone(), s.last_heartbeat_wall))
            .collect()
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Removes session `id`, tells its streams, and remembers why.
    fn end(&mut self, id: &str, why: Ended) -> Option<Session> {
        let session = self.by_id.remove(id)?;
        session.ended.send_replace(Some(why));
        if why != Ended::LeadershipLost {
            self.ended.insert(id.to_owned(), why);
            self.ended_order.push_back(id.to_owned());
            while self.ended_order.len() > ENDED_MEMORY {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
        Some(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Ipv4Net {
        "10.200.0.0/24".parse().unwrap()
    }

    #[test]
    fn a_new_registration_replaces_the_old_session_and_says_so() {
        let mut t = SessionTable::default();
        let now = Instant::now();
        t.register("s1".into(), "n1", net(), now, 1);
        let view = t.get("s1", "n1").unwrap();
        t.register("s2".into(), "n1", net(), now, 2);
        assert_eq!(*view.ended.borrow(), Some(Ended::Replaced));
        let e = t.heartbeat("s1", "n1", now, 3).unwrap_err().to_string();
        assert!(
            e.contains("replaced") && e.contains("register again"),
            "{e}"
        );
        t.heartbeat("s2", "n1", now, 3).unwrap();
        assert_eq!(t.live(), HashMap::from([("n1".to_owned(), 3)]));
    }

    #[test]
    fn sessions_belong_to_their_node() {
        let mut t = SessionTable::default();
        t.register("s1".into(), "n1", net(), Instant::now(), 1);
        let e = t.get("s1", "n2").unwrap_err();
        assert!(matches!(e, DispatchError::NotYourSession { .. }), "{e}");
        let e = t.get("nope", "n1").unwrap_err().to_string();
        assert!(e.contains("never registered"), "{e}");
    }

    #[test]
    fn silent_sessions_expire_and_heartbeats_keep_them() {
        let mut t = SessionTable::default();
        let start = Instant::now();
        let deadline = Duration::from_secs(3);
        t.register("s1".into(), "n1", net(), start, 10);
        t.register("s2".into(), "n2", net(), start, 10);
        t.heartbeat("s2", "n2", start + Duration::from_secs(2), 20)
            .unwrap();
        let expired = t.expire(start + Duration::from_secs(4), deadline);
        assert_eq!(
            expired,
            [Expired {
                node: "n1".into(),
                last_heartbeat_wall: 10
            }]
        );
        assert_eq!(t.len(), 1);
        let e = t.heartbeat("s1", "n1", start, 0).unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        // A re-registration of the expired node works.
        t.register("s3".into(), "n1", net(), start, 30);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_removed_nodes_session_ends_and_says_why() {
        let mut t = SessionTable::default();
        let now = Instant::now();
        t.register("s1".into(), "n1", net(), now, 1);
        t.register("s2".into(), "n2", net(), now, 1);
        let view = t.get("s1", "n1").unwrap();
        assert_eq!(t.end_nodes(&["n1".into(), "gone".into()]), ["n1"]);
        assert_eq!(*view.ended.borrow(), Some(Ended::Removed));
        let e = t.heartbeat("s1", "n1", now, 2).unwrap_err().to_string();
        assert!(e.contains("removed from the cluster"), "{e}");
        assert_eq!(t.live(), HashMap::from([("n2".to_owned(), 1)]));
    }

    #[test]
    fn clearing_ends_every_session_as_leadership_lost() {
        let mut t = SessionTable::default();
        t.register("s1".into(), "n1", net(), Instant::now(), 1);
        let view = t.get("s1", "n1").unwrap();
        t.clear();
        assert_eq!(*view.ended.borrow(), Some(Ended::LeadershipLost));
        assert_eq!(t.len(), 0);
        assert!(t.live().is_empty());
    }

    #[test]
    fn settings_are_checked() {
        assert!(SessionSettings::default().validate().is_ok());
        let zero = SessionSettings {
            heartbeat_period: Duration::ZERO,
            ..Default::default()
        };
        assert!(zero.validate().unwrap_err().contains("heartbeat period"));
        let none = SessionSettings {
            missed_heartbeats: 0,
            ..Default::default()
        };
        assert!(none.validate().unwrap_err().contains("missed"));
        assert_eq!(
            SessionSettings::default().deadline(),
            Duration::from_secs(3)
        );
    }
}
