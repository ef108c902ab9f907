//! The `Network` stream: the cluster's network map ([`super::netmap`]), whole first, then
//! changes, until the session ends.

use std::sync::Arc;

use berth_proto::v1::NetworkUpdate;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use super::Inner;
use super::assign::wait_end;
use super::error::DispatchError;
use super::netmap::diff;
use crate::api::control::ControlError;
use crate::api::store::READ_TIMEOUT;

/// How many messages a stream buffers before it waits for its agent.
const STREAM_BUFFER: usize = 8;

impl Inner {
    /// Opens the network stream of session `session` of `node`.
    pub(crate) async fn network(
        self: Arc<Self>,
        node: &str,
        session: &str,
    ) -> Result<ReceiverStream<Result<NetworkUpdate, Status>>, DispatchError> {
        self.ensure_leader()?;
        let view = self.sessions().get(session, node)?;
        self.linearize().await?;
        let target = super::assign::applied_index(&self);
        let mut maps = self.hub.net.subscribe();
        self.hub.wake();
        let mut scanned = self.hub.scanned_watch();
        match tokio::time::timeout(READ_TIMEOUT, scanned.wait_for(|s| *s >= target)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(DispatchError::Closed),
            Err(_) => return Err(ControlError::ReadTimeout(READ_TIMEOUT).into()),
        }
        let first = maps.borrow_and_update().clone();
        let revision = *scanned.borrow();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        debug!(
            node,
            nodes = first.nodes.len(),
            services = first.services.len(),
            revision,
            "network stream opened"
        );
        let full = first.full(revision);
        let node = node.to_owned();
        let session = session.to_owned();
        let mut ended = view.ended;
        tokio::spawn(async move {
            if tx.send(Ok(full)).await.is_err() {
                return;
            }
            let mut sent = first;
            loop {
                tokio::select! {
                    changed = maps.changed() => {
                        if changed.is_err() {
                            let _ = tx.send(Err(DispatchError::Closed.into())).await;
                            return;
                        }
                        let now = maps.borrow_and_update().clone();
                        let update = diff(&sent, &now, *scanned.borrow());
                        sent = now;
                        let Some(update) = update else { continue };
                        if tx.send(Ok(update)).await.is_err() {
                            return;
                        }
                    }
                    why = wait_end(&mut ended) => {
                        let error = self.stream_ended(why, &session);
                        debug!(node, ?why, "network stream ends");
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
