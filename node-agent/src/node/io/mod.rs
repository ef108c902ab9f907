//! What clients ask of this node through the controllers — a task's logs, a command in a
//! task's container, the node's images — as `proto/berth/v1/node_io.proto` describes it.
//!
//! The session opens the `Requests` stream; each request it receives is served on its own
//! `Attach` call ([`serve_request`]): the first frame names the session and the request,
//! then the executor's [`Executor::serve_io`] reads the client's frames and writes its own.
//! The real runtime serves requests in [`runtime`]; the default (hollow nodes) refuses them.
//!
//! - `runtime.rs`: the real runtime's handler, by request kind;
//! - `logs.rs`, `exec.rs`, `images.rs`: each kind.

mod exec;
mod images;
mod logs;
pub(crate) mod runtime;

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::dispatcher_client::DispatcherClient;
use berth_proto::v1::{AttachDown, AttachOpen, AttachUp, NodeFailure, NodeRequest, attach_up};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::Executor;

/// The client's frames of one request, ending when the client is done or gone.
pub type Down = Pin<Box<dyn Stream<Item = AttachDown> + Send>>;

/// Where a request's answer frames go; dropping it ends the call.
#[derive(Debug, Clone)]
pub struct Up(mpsc::Sender<AttachUp>);

impl Up {
    /// Sends one frame; `false` when the call is gone (the client left).
    pub async fn send(&self, frame: attach_up::Frame) -> bool {
        self.0.send(AttachUp { frame: Some(frame) }).await.is_ok()
    }

    /// Sends a failure frame (the request's last).
    pub async fn fail(&self, code: Code, message: impl Into<String>) {
        let failure = NodeFailure {
            code: code as i32,
            message: message.into(),
        };
        self.send(attach_up::Frame::Failure(failure)).await;
    }

    /// Resolves when the call is gone.
    pub async fn closed(&self) {
        self.0.closed().await;
    }
}

/// How many frames to the controller may wait to be sent.
const UP_QUEUE: usize = 16;
/// How long a call may stay open after its handler is done, for its last frames to go.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers `request` on its own `Attach` call; returns when the request is done.
pub(super) async fn serve_request<E: Executor>(
    mut client: DispatcherClient<Channel>,
    session_id: String,
    request: NodeRequest,
    executor: Arc<E>,
) {
    let (tx, rx) = mpsc::channel(UP_QUEUE);
    let open = AttachUp {
        frame: Some(attach_up::Frame::Open(AttachOpen {
            session_id,
            request_id: request.request_id.clone(),
        })),
    };
    if tx.send(open).await.is_err() {
        return;
    }
    let mut raw = match client.attach(ReceiverStream::new(rx)).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            warn!(request = %request.request_id, code = ?status.code(), error = %status.message(), "cannot attach to answer a request");
            return;
        }
    };
    // The client's frames go to the handler through a channel, so that the call itself
    // outlives the handler: dropping the answer stream would reset the call before the
    // handler's last frames (an exit code, an image list) are sent.
    let (frames, down) = mpsc::channel(UP_QUEUE);
    let reading = tokio::spawn(async move {
        while let Ok(Some(frame)) = raw.message().await {
            // A handler that stopped reading still lets the call run to its end.
            let _ = frames.send(frame).await;
        }
    });
    let down: Down = Box::pin(ReceiverStream::new(down));
    let up = Up(tx);
    match request.op {
        Some(op) => {
            debug!(request = %request.request_id, "serving a request");
            executor.serve_io(op, down, up).await;
        }
        None => {
            up.fail(Code::InvalidArgument, "the request carries no operation")
                .await;
        }
    }
    // The handler's frames are queued; the controller ends the call once it has them.
    if tokio::time::timeout(DRAIN, reading).await.is_err() {
        debug!(request = %request.request_id, "the controller kept the call open; dropping it");
    }
}
