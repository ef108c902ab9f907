//! `Requests` and `Attach`: the node's side of the leader's relay ([`crate::api::Relay`]),
//! which carries clients' logs, exec and image requests over the node's session.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::{AttachDown, AttachUp, NodeRequest, attach_up};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::debug;

use super::assign::wait_end;
use super::{DispatchError, Inner};
use crate::api::relay::REQUEST_QUEUE;

/// The frames sent to a node on an `Attach` call.
pub type AttachStream = Pin<Box<dyn Stream<Item = Result<AttachDown, Status>> + Send>>;

impl Inner {
    /// `Requests` of `node`'s session `session`: the relay's requests for it, until the
    /// session ends.
    pub(super) fn requests(
        self: Arc<Self>,
        node: &str,
        session: &str,
    ) -> Result<ReceiverStream<Result<NodeRequest, Status>>, DispatchError> {
        self.ensure_leader()?;
        let view = self.sessions().get(session, node)?;
        let mut connected = self.relay.connect(node, session);
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let node = node.to_owned();
        let session = session.to_owned();
        let mut ended = view.ended;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    request = connected.requests.recv() => {
                        let Some(request) = request else { break };
                        if tx.send(Ok(request)).await.is_err() {
                            break;
                        }
                    }
                    why = wait_end(&mut ended) => {
                        let error = self.stream_ended(why, &session);
                        debug!(node, ?why, "requests stream ends");
                        let _ = tx.send(Err(error.into())).await;
                        break;
                    }
                    () = tx.closed() => break,
                }
            }
            self.relay.disconnect(&node, &session);
        });
        Ok(ReceiverStream::new(rx))
    }

    /// `Attach` of `node`: its first frame names its session and the request it answers.
    pub(super) async fn attach(
        &self,
        node: &str,
        mut up: Streaming<AttachUp>,
    ) -> Result<AttachStream, Status> {
        self.ensure_leader()
            .map_err(|e| Status::from(self.lift(e)))?;
        let open = match up.next().await {
            Some(Ok(AttachUp {
                frame: Some(attach_up::Frame::Open(open)),
            })) => open,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first frame of Attach must be `open`, naming the session and the request",
                ));
            }
        };
        self.sessions()
            .get(&open.session_id, node)
            .map_err(Status::from)?;
        let down = self.relay.attach(node, &open.request_id, Box::pin(up))?;
        Ok(Box::pin(ReceiverStream::new(down).map(Ok)))
    }
}
