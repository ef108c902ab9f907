//! [`Relay`]: nodes' request streams, and requests waiting for their node to attach.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::v1::{AttachDown, AttachUp, NodeRequest, node_request};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tracing::debug;

use super::RelayError;

/// How long [`Relay::open`] waits for the node to attach.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many requests may wait to be sent on one node's stream.
pub const REQUEST_QUEUE: usize = 64;
/// How many frames to a node may wait to be sent on one `Attach` call.
const DOWN_QUEUE: usize = 16;

/// The frames a node sends on an `Attach` call, after its `open` frame.
pub type UpStream = Pin<Box<dyn Stream<Item = Result<AttachUp, Status>> + Send>>;

/// A request connected to its node: the node's frames, and a sender of frames to it. Dropping
/// `down` ends the node's side of the call.
pub struct Attached {
    /// What the node sends.
    pub up: UpStream,
    /// What to send the node.
    pub down: mpsc::Sender<AttachDown>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached").finish_non_exhaustive()
    }
}

/// A node's side of [`Relay::connect`]: the requests to send it, in order.
#[derive(Debug)]
pub struct ConnectedNode {
    /// The requests.
    pub requests: mpsc::Receiver<NodeRequest>,
}

/// A node's request stream.
struct Link {
    session: String,
    tx: mpsc::Sender<NodeRequest>,
}

/// A request sent to a node, waiting for its `Attach`.
struct Pending {
    node: String,
    tx: oneshot::Sender<Attached>,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Link>,
    pending: HashMap<String, Pending>,
}

/// The leader's relay between clients and nodes; cheap to clone (clones share it).
#[derive(Clone, Default)]
pub struct Relay {
    state: Arc<Mutex<State>>,
    next: Arc<AtomicU64>,
    open_timeout: Option<Duration>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state();
        f.debug_struct("Relay")
            .field("nodes", &s.nodes.len())
            .field("pending", &s.pending.len())
            .finish()
    }
}

/// Removes a pending request when its [`Relay::open`] ends, however it ends.
struct PendingGuard<'a> {
    relay: &'a Relay,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.relay.state().pending.remove(&self.id);
    }
}

impl Relay {
    /// A relay whose [`Relay::open`] waits `timeout` instead of [`OPEN_TIMEOUT`].
    pub fn with_open_timeout(timeout: Duration) -> Self {
        Relay {
            open_timeout: Some(timeout),
            ..Relay::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects the request stream of `node`'s session `session`, replacing an earlier one.
    pub fn connect(&self, node: &str, session: &str) -> ConnectedNode {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let replaced = self.state().nodes.insert(
            node.to_owned(),
            Link {
                session: session.to_owned(),
                tx,
            },
        );
        debug!(
            node,
            session,
            replaced = replaced.is_some(),
            "node request stream connected"
        );
        ConnectedNode { requests: rx }
    }

    /// Forgets `node`'s request stream if it is still that of `session`.
    pub fn disconnect(&self, node: &str, session: &str) {
        let mut s = self.state();
        if s.nodes.get(node).is_some_and(|l| l.session == session) {
            s.nodes.remove(node);
            debug!(node, session, "node request stream disconnected");
        }
    }

    /// Whether `node` has a request stream.
    pub fn is_connected(&self, node: &str) -> bool {
        self.state()
            .nodes
            .get(node)
            .is_some_and(|l| !l.tx.is_closed())
    }

    /// Sends `node` a request and waits until it attaches to answer it.
    pub async fn open(&self, node: &str, op: node_request::Op) -> Result<Attached, RelayError> {
        let id = format!(
            "{:x}-{:x}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        let link = {
            let mut s = self.state();
            let link = s.nodes.get(node).map(|l| l.tx.clone()).ok_or_else(|| {
                RelayError::NotConnected {
                    node: node.to_owned(),
                }
            })?;
            s.pending.insert(
                id.clone(),
                Pending {
                    node: node.to_owned(),
                    tx,
                },
            );
            link
        };
        let _guard = PendingGuard {
            relay: self,
            id: id.clone(),
        };
        let request = NodeRequest {
            request_id: id,
            op: Some(op),
        };
        let not_connected = || RelayError::NotConnected {
            node: node.to_owned(),
        };
        let waited = self.open_timeout.unwrap_or(OPEN_TIMEOUT);
        let attached = async {
            link.send(request).await.map_err(|_| not_connected())?;
            rx.await.map_err(|_| not_connected())
        };
        match tokio::time::timeout(waited, attached).await {
            Ok(answer) => answer,
            Err(_) => Err(RelayError::Timeout {
                node: node.to_owned(),
                waited,
            }),
        }
    }

    /// Connects `node`'s `Attach` call for request `request` to the caller waiting for it;
    /// answers the frames to send the node.
    pub fn attach(
        &self,
        node: &str,
        request: &str,
        up: UpStream,
    ) -> Result<mpsc::Receiver<AttachDown>, RelayError> {
        let unknown = || RelayError::UnknownRequest {
            request: request.to_owned(),
        };
        let pending = {
            let mut s = self.state();
            match s.pending.remove(request) {
                Some(p) if p.node == node => p,
                Some(p) => {
                    s.pending.insert(request.to_owned(), p);
                    return Err(unknown());
                }
                None => return Err(unknown()),
            }
        };
        let (down, rx) = mpsc::channel(DOWN_QUEUE);
        pending
            .tx
            .send(Attached { up, down })
            .map_err(|_| unknown())?;
        Ok(rx)
    }

    /// How many requests wait for their node.
    pub fn pending(&self) -> usize {
        self.state().pending.len()
    }
}
