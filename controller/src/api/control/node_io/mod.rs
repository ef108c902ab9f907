//! `Logs`, `Exec` and the image calls: answered by the leader, which relays them to the
//! nodes over their sessions ([`crate::api::Relay`]); a follower forwards the whole call,
//! streams included, to the leader.
//!
//! - `logs.rs`: a task's or a service's log lines, merged;
//! - `exec.rs`: a process in a running task's container, its stdio both ways;
//! - `images.rs`: import, list and remove images on nodes;
//! - here: what they share (the leader check, which tasks and nodes a call names).

mod exec;
mod images;
mod logs;

use std::pin::Pin;

use berth_proto::v1::NodeFailure;
use futures::Stream;
use tonic::{Code, Request, Status};

use super::ControlService;
use super::error::ControlError;
use super::forward::FORWARDED_BY;
use crate::api::leadership::{Leadership, leadership};
use crate::api::relay::Relay;
use crate::state::{Node, NodeStatus, ObservedState, Task, keys};

pub use exec::ExecStream;
pub use logs::LogsStream;

/// A boxed stream of a server-streaming answer.
type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One task a call is about, with where it is.
#[derive(Debug, Clone)]
struct Located {
    task: Task,
    /// Its node's id, once it was placed.
    node: Option<String>,
    /// Its node's hostname, when the node is known.
    hostname: String,
}

/// The tasks a `target` (a service name, or a task id or prefix of one) names.
#[derive(Debug)]
struct Target {
    /// The service named, if the target is a service.
    service: Option<String>,
    tasks: Vec<Located>,
}

impl ControlService {
    /// The relay, on a member that serves node sessions.
    fn node_relay(&self) -> Result<Relay, ControlError> {
        self.relay.clone().ok_or(ControlError::NoNodeSessions)
    }

    /// `Ok` when this member leads now (so the nodes' sessions are here), else
    /// [`ControlError::NotLeader`] for [`Self::forward_to`].
    fn ensure_leading(&self) -> Result<(), ControlError> {
        match leadership(&self.raft, self.id) {
            Leadership::Leading => Ok(()),
            Leadership::Elsewhere {
                leader_id: None, ..
            } => Err(ControlError::NoLeader),
            Leadership::Elsewhere { leader_id, addr } => {
                Err(ControlError::NotLeader { leader_id, addr })
            }
        }
    }

    /// `message` as a streaming call forwarded by this member: no deadline, since a stream
    /// (`logs -f`, an interactive exec) may last as long as its caller wants.
    fn forwarded_stream<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED_BY, tonic::metadata::MetadataValue::from(self.id));
        request
    }

    /// The nodes of the store, by id.
    async fn nodes(&self) -> Result<Vec<Node>, ControlError> {
        self.list(keys::NODES).await
    }

    /// The tasks `target` names, after a linearizable read.
    async fn resolve(&self, target: &str) -> Result<Target, ControlError> {
        if target.is_empty() {
            return Err(ControlError::BadStream(
                "name a service or a task (see `berth ps`)".into(),
            ));
        }
        self.linearize().await?;
        let tasks: Vec<Task> = self.list(keys::TASKS).await?;
        let nodes = self.nodes().await?;
        let locate = |task: Task| {
            let hostname = task
                .node
                .as_ref()
                .and_then(|id| nodes.iter().find(|n| &n.id == id))
                .map(|n| n.hostname.clone())
                .unwrap_or_default();
            Located {
                node: task.node.clone(),
                hostname,
                task,
            }
        };
        let service_exists = self
            .get::<crate::state::Service>(&keys::service(target))
            .await?
            .is_some();
        if service_exists {
            let mut of: Vec<Located> = tasks
                .into_iter()
                .filter(|t| t.service == target)
                .map(locate)
                .collect();
            of.sort_by(|a, b| {
                (a.task.slot, a.task.created_at).cmp(&(b.task.slot, b.task.created_at))
            });
            return Ok(Target {
                service: Some(target.to_owned()),
                tasks: of,
            });
        }
        let mut matching: Vec<Task> = tasks
            .into_iter()
            .filter(|t| t.id.starts_with(target))
            .collect();
        match matching.len() {
            0 => Err(ControlError::NoSuchTarget(target.to_owned())),
            1 => Ok(Target {
                service: None,
                tasks: vec![locate(matching.remove(0))],
            }),
            count => match matching.iter().position(|t| t.id == target) {
                Some(i) => Ok(Target {
                    service: None,
                    tasks: vec![locate(matching.swap_remove(i))],
                }),
                None => Err(ControlError::AmbiguousTask {
                    prefix: target.to_owned(),
                    count,
                }),
            },
        }
    }

    /// The nodes `selector` names (ids or hostnames), or every ready node when it names
    /// none, in id order.
    async fn select_nodes(&self, selector: &[String]) -> Result<Vec<Node>, ControlError> {
        self.linearize().await?;
        let mut nodes = self.nodes().await?;
        if selector.is_empty() {
            nodes.retain(|n| n.status == NodeStatus::Ready);
            return Ok(nodes);
        }
        let mut chosen = Vec::new();
        for name in selector {
            let n = nodes
                .iter()
                .find(|n| &n.id == name || &n.hostname == name)
                .ok_or_else(|| ControlError::NodeNotFound(name.clone()))?;
            if !chosen.iter().any(|c: &Node| c.id == n.id) {
                chosen.push(n.clone());
            }
        }
        Ok(chosen)
    }
}

/// A task state in words, for errors.
fn state_words(s: ObservedState) -> String {
    format!("{s:?}").to_lowercase()
}

/// The status a node's failure frame stands for.
fn failure_status(node: &str, f: &NodeFailure) -> Status {
    Status::new(
        Code::from_i32(f.code),
        format!("node {node}: {}", f.message),
    )
}
