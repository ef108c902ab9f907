//! Node liveness on the leader: a background check, every heartbeat period and as soon as a
//! session's heartbeats stop (sessions are looked at every tenth of a period, at most every
//! 100 ms, so that a node is marked down within that of its deadline), that ends the
//! sessions whose heartbeats stopped and reconciles the nodes' committed status with what
//! the leader's memory says:
//!
//! - a READY node without a live session is marked DOWN (once: the write expects the record's
//!   version, and the next check sees it DOWN);
//! - a DOWN (or UNKNOWN) node with a live session is marked READY again (a registration
//!   already writes READY; this repairs a registration that raced with a down-mark);
//! - a live node's `last_seen` is committed only when it is `last_seen_interval` (in
//!   [`super::SessionSettings`]) older than its last heartbeat, so heartbeats cost no Raft
//!   write.
//!
//! A new leader knows no session. It gives the nodes [`grace`] from its election — twice the
//! deadline, and at least 5 s: a node finds the new leader only once its own calls to the old
//! one fail, which can take its connect timeout (3 s) — to register before it marks a READY
//! node without a session down (a session that expires meanwhile is marked down at once).
//! Marking a live node down would replace every task it runs.
//!
//! [`decide`] is pure (records and the session table's view in, marks out); [`run`] is the
//! shell that reads the store and commits the marks through the proposer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{debug, info, warn};

use super::Inner;
use super::session::Expired;
use crate::api::store::Written;
use crate::raft::{Expect, Op};
use crate::state::{Node, NodeStatus, keys};

/// What the check does to one node's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// Its heartbeats stopped.
    Down,
    /// It is heard from again.
    Ready,
    /// Only `last_seen` moves.
    LastSeen,
}

/// A change to one node's record, to be written expecting `version`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    /// What it is.
    pub kind: MarkKind,
    /// The version of the record it was decided from.
    pub version: u64,
    /// The new record.
    pub node: Node,
}

/// What the leader's memory says about the nodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heard {
    /// Nodes with a live session: their last heartbeat, Unix nanoseconds.
    pub live: HashMap<String, i128>,
    /// Sessions that just expired.
    pub expired: Vec<Expired>,
    /// Whether this leader is still in its first 2×deadline, when a READY node without a
    /// session may simply not have registered with it yet.
    pub in_grace: bool,
}

/// The nodes with a live session (as `heard` before `nodes` was read) that have no record:
/// they were removed, and their sessions end.
pub(crate) fn removed(nodes: &[(u64, Node)], heard: &Heard) -> Vec<String> {
    let known: std::collections::HashSet<&str> = nodes.iter().map(|(_, n)| n.id.as_str()).collect();
    let mut out: Vec<String> = heard
        .live
        .keys()
        .filter(|node| !known.contains(node.as_str()))
        .cloned()
        .collect();
    out.sort();
    out
}

/// The marks for `nodes` (each with its store version), given what the leader heard.
pub(crate) fn decide(
    nodes: Vec<(u64, Node)>,
    heard: &Heard,
    last_seen_interval: Duration,
) -> Vec<Mark> {
    let interval = i128::try_from(last_seen_interval.as_nanos()).unwrap_or(i128::MAX);
    let expired: HashMap<&str, i128> = heard
        .expired
        .iter()
        .map(|e| (e.node.as_str(), e.last_heartbeat_wall))
        .collect();
    let mut marks = Vec::new();
    for (version, mut node) in nodes {
        let live = heard.live.get(&node.id).copied();
        let kind = match (node.status, live) {
            (NodeStatus::Ready, None) => {
                let just_expired = expired.get(node.id.as_str()).copied();
                if just_expired.is_none() && heard.in_grace {
                    continue;
                }
                if let Some(at) = just_expired {
                    node.last_seen = Some(node.last_seen.map_or(at, |s| s.max(at)));
                }
                node.status = NodeStatus::Down;
                MarkKind::Down
            }
            (NodeStatus::Down | NodeStatus::Unknown, Some(at)) => {
                node.status = NodeStatus::Ready;
                node.last_seen = Some(at);
                MarkKind::Ready
            }
            (NodeStatus::Ready, Some(at)) => {
                if at.saturating_sub(node.last_seen.unwrap_or(i128::MIN)) < interval {
                    continue;
                }
                node.last_seen = Some(at);
                MarkKind::LastSeen
            }
            (NodeStatus::Down | NodeStatus::Unknown, None) => continue,
        };
        marks.push(Mark {
            kind,
            version,
            node,
        });
    }
    marks
}

/// The check's loop; runs for the member's life, acting only while it leads.
pub(crate) async fn run(inner: Arc<Inner>) {
    let period = inner.settings.heartbeat_period;
    let mut tick = tokio::time::interval(sessions_interval(period));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = inner.settings.deadline();
    let mut leader_since: Option<Instant> = None;
    let mut next_check = Instant::now();
    loop {
        tick.tick().await;
        if !inner.is_leader() {
            if leader_since.take().is_some() {
                let mut sessions = inner.sessions();
                debug!(sessions = sessions.len(), "not the leader: ending sessions");
                sessions.clear();
            }
            continue;
        }
        let now = Instant::now();
        let since = *leader_since.get_or_insert(now);
        // Looking at the sessions is a walk of memory; the check reads every node record,
        // so it runs once a period unless a session just ended.
        let heard = {
            let mut sessions = inner.sessions();
            let expired = sessions.expire(now, deadline);
            if expired.is_empty() && now < next_check {
                continue;
            }
            Heard {
                live: sessions.live(),
                expired,
                in_grace: now.saturating_duration_since(since) < grace(deadline),
            }
        };
        next_check = now + period;
        if let Err(e) = check(&inner, heard).await {
            warn!(error = %e, "node liveness check failed; retrying next period");
        }
    }
}

/// How long a new leader waits for the nodes to register before it marks one down.
fn grace(deadline: Duration) -> Duration {
    deadline.saturating_mul(2).max(Duration::from_secs(5))
}

/// How often the sessions are looked at: a tenth of the heartbeat period, between 5 and
/// 100 ms.
fn sessions_interval(period: Duration) -> Duration {
    (period / 10).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// One check, with what the session table said.
async fn check(inner: &Inner, heard: Heard) -> Result<(), super::DispatchError> {
    let deadline = inner.settings.deadline();
    for e in &heard.expired {
        info!(node = %e.node, ?deadline, "heartbeats stopped: session ended");
    }
    let nodes = super::list_versioned::<Node>(&inner.reader, keys::NODES).await?;
    // Only sessions live before the listing: a registration writes the record before its
    // session starts, so a session that began since may have a record the listing missed.
    let gone = removed(&nodes, &heard);
    if !gone.is_empty() {
        for node in inner.sessions().end_nodes(&gone) {
            info!(node = %node, "node removed from the cluster: session ended");
        }
    }
    let marks = decide(nodes, &heard, inner.settings.last_seen_interval);
    let writes = marks.into_iter().map(|mark| async move {
        let key = keys::node(&mark.node.id);
        let op = Op::Put {
            value: crate::api::store::encode(&key, &mark.node)?,
            key,
            expect: Expect::Version(mark.version),
        };
        let written = crate::api::store::propose(&inner.proposer, op).await?;
        Ok::<_, super::DispatchError>((mark, written))
    });
    for result in join_all(writes).await {
        match result? {
            (mark, Written::Conflict { .. }) => {
                debug!(node = %mark.node.id, kind = ?mark.kind, "node record changed meanwhile; deciding again next period");
            }
            (mark, Written::Applied) => match mark.kind {
                MarkKind::Down => {
                    warn!(node = %mark.node.id, ?deadline, "node marked down: no heartbeat")
                }
                MarkKind::Ready => info!(node = %mark.node.id, "node marked ready again"),
                MarkKind::LastSeen => debug!(node = %mark.node.id, "last_seen committed"),
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Availability, NodeResources};

    const S: i128 = 1_000_000_000;

    #[test]
    fn a_new_leader_waits_at_least_five_seconds() {
        assert_eq!(grace(Duration::from_millis(750)), Duration::from_secs(5));
        assert_eq!(grace(Duration::from_secs(3)), Duration::from_secs(6));
    }

    #[test]
    fn sessions_are_looked_at_ten_times_a_period_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(sessions_interval(ms(1000)), ms(100));
        assert_eq!(sessions_interval(ms(250)), ms(25));
        assert_eq!(sessions_interval(ms(20)), ms(5));
        assert_eq!(sessions_interval(ms(5000)), ms(100));
    }

    fn node(id: &str, status: NodeStatus, last_seen: Option<i128>) -> Node {
        Node {
            id: id.into(),
            hostname: id.into(),
            address: "10.0.0.1".into(),
            labels: Default::default(),
            resources: NodeResources::default(),
            status,
            availability: Availability::Active,
            last_seen,
            subnet: None,
            agent_version: None,
        }
    }

    fn kinds(marks: &[Mark]) -> Vec<(&str, MarkKind, Option<i128>)> {
        marks
            .iter()
            .map(|m| (m.node.id.as_str(), m.kind, m.node.last_seen))
            .collect()
    }

    #[test]
    fn ready_nodes_without_a_session_go_down_once_the_grace_is_over() {
        let nodes = || {
            vec![
                (5, node("a", NodeStatus::Ready, Some(S))),
                (6, node("b", NodeStatus::Down, Some(S))),
                (7, node("c", NodeStatus::Unknown, None)),
            ]
        };
        let mut heard = Heard {
            in_grace: true,
            ..Default::default()
        };
        assert!(decide(nodes(), &heard, Duration::from_secs(30)).is_empty());
        heard.in_grace = false;
        let marks = decide(nodes(), &heard, Duration::from_secs(30));
        assert_eq!(kinds(&marks), [("a", MarkKind::Down, Some(S))]);
        assert_eq!(marks[0].version, 5);
        assert_eq!(marks[0].node.status, NodeStatus::Down);
    }

    #[test]
    fn an_expired_session_goes_down_even_in_the_grace_with_its_last_heartbeat() {
        let heard = Heard {
            expired: vec![Expired {
                node: "a".into(),
                last_heartbeat_wall: 9 * S,
            }],
            in_grace: true,
            ..Default::default()
        };
        let marks = decide(
            vec![(1, node("a", NodeStatus::Ready, Some(S)))],
            &heard,
            Duration::from_secs(30),
        );
        assert_eq!(kinds(&marks), [("a", MarkKind::Down, Some(9 * S))]);
    }

    #[test]
    fn live_sessions_of_nodes_without_a_record_are_removed_ones() {
        let heard = Heard {
            live: HashMap::from([("kept".to_owned(), S), ("gone".to_owned(), S)]),
            ..Default::default()
        };
        let nodes = vec![
            (1, node("kept", NodeStatus::Ready, Some(S))),
            (2, node("silent", NodeStatus::Down, Some(S))),
        ];
        assert_eq!(removed(&nodes, &heard), ["gone"]);
    }

    #[test]
    fn live_nodes_come_back_ready_and_last_seen_moves_coarsely() {
        let heard = Heard {
            live: HashMap::from([
                ("down".to_owned(), 100 * S),
                ("fresh".to_owned(), 100 * S),
                ("old".to_owned(), 100 * S),
            ]),
            ..Default::default()
        };
        let marks = decide(
            vec![
                (1, node("down", NodeStatus::Down, Some(S))),
                (2, node("fresh", NodeStatus::Ready, Some(90 * S))),
                (3, node("old", NodeStatus::Ready, Some(60 * S))),
            ],
            &heard,
            Duration::from_secs(30),
        );
        assert_eq!(
            kinds(&marks),
            [
                ("down", MarkKind::Ready, Some(100 * S)),
                ("old", MarkKind::LastSeen, Some(100 * S)),
            ]
        );
        assert_eq!(marks[0].node.status, NodeStatus::Ready);
    }
}
