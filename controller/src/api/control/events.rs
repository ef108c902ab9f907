//! `WatchEvents`: the changes this member applies to services, tasks and nodes, as a stream
//! of events.
//!
//! The source is the state machine's change feed ([`crate::raft::KvReader::subscribe`]): every change is
//! seen once, in log order, after it committed on this member. Nothing is buffered for a
//! watcher beyond the feed's own window: one that falls further behind, or a member that
//! installs a snapshot (the whole state replaced), ends the stream with `DATA_LOSS`, and the
//! caller lists the state again and watches anew (the list-then-watch pattern of Kubernetes'
//! informers).

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_proto::v1::{self, EventAction, EventKind, WatchEventsRequest, event};
use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::ControlService;
use crate::raft::{Change, NodeId, StoreEvent};
use crate::state::{Node, Service, Task, keys, wire};

/// The stream `WatchEvents` answers.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

/// How many events may wait for a slow watcher's connection.
const SEND_BUFFER: usize = 1024;

/// Which events a watcher asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    /// Empty: every kind.
    kinds: Vec<EventKind>,
    /// Empty: every service.
    service: String,
}

impl Filter {
    fn new(request: WatchEventsRequest) -> Result<Self, Status> {
        let mut kinds = Vec::new();
        for k in &request.kinds {
            match EventKind::try_from(*k) {
                Ok(EventKind::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "kinds: {k} is not an event kind (service, task or node)"
                    )));
                }
                Ok(kind) => kinds.push(kind),
            }
        }
        Ok(Self {
            kinds,
            service: request.service,
        })
    }

    fn wants(&self, kind: EventKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn decode<T: DeserializeOwned>(change: &Change) -> Result<Option<T>, Status> {
    change
        .value
        .as_deref()
        .map(serde_json::from_slice)
        .transpose()
        .map_err(|e| Status::internal(format!("cannot decode the record {}: {e}", change.key)))
}

/// The event for `change`, if it is one the filter wants.
fn to_event(change: &Change, filter: &Filter, at: i64) -> Result<Option<v1::Event>, Status> {
    let (kind, name) = if let Some(name) = change.key.strip_prefix(keys::SERVICES) {
        (EventKind::Service, name)
    } else if let Some(id) = change.key.strip_prefix(keys::TASKS) {
        (EventKind::Task, id)
    } else if let Some(id) = change.key.strip_prefix(keys::NODES) {
        (EventKind::Node, id)
    } else {
        return Ok(None);
    };
    if !filter.wants(kind) {
        return Ok(None);
    }
    let object = match kind {
        EventKind::Service => {
            decode::<Service>(change)?.map(|s| event::Object::Service(wire::service_to_wire(&s)))
        }
        EventKind::Task => {
            decode::<Task>(change)?.map(|t| event::Object::Task(wire::task_to_wire(&t)))
        }
        _ => decode::<Node>(change)?.map(|n| event::Object::Node(wire::node_to_wire(&n))),
    };
    if !filter.service.is_empty() {
        let of_service = match (&object, kind) {
            (_, EventKind::Service) => name == filter.service,
            (Some(event::Object::Task(t)), _) => t.service == filter.service,
            // A removed task's service is not known any more; nodes belong to no service.
            _ => false,
        };
        if !of_service {
            return Ok(None);
        }
    }
    let action = match (&object, change.existed) {
        (None, _) => EventAction::Removed,
        (Some(_), false) => EventAction::Created,
        (Some(_), true) => EventAction::Updated,
    };
    Ok(Some(v1::Event {
        kind: kind.into(),
        action: action.into(),
        name: name.to_owned(),
        index: change.index,
        at,
        object,
    }))
}

/// Feeds `tx` from the store's changes until the watcher goes away or falls behind, or the
/// member stops (its Raft node shuts down: a server stops gracefully only once its streams
/// have ended).
async fn pump(
    mut changes: broadcast::Receiver<StoreEvent>,
    mut raft: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    filter: Filter,
    tx: mpsc::Sender<Result<v1::Event, Status>>,
) {
    loop {
        let next = tokio::select! {
            () = tx.closed() => return,
            stopped = raft.changed() => {
                if stopped.is_err() || raft.borrow().state == ServerState::Shutdown {
                    let _ = tx.send(Err(Status::unavailable("this controller is stopping; watch another"))).await;
                    return;
                }
                continue;
            }
            next = changes.recv() => next,
        };
        let lost = match next {
            Ok(StoreEvent::Applied(batch)) => {
                let at = now();
                for change in batch.iter() {
                    let event = match to_event(change, &filter, at) {
                        Ok(Some(event)) => Ok(event),
                        Ok(None) => continue,
                        Err(status) => Err(status),
                    };
                    let failed = event.is_err();
                    if tx.send(event).await.is_err() || failed {
                        return;
                    }
                }
                continue;
            }
            Ok(StoreEvent::Reset) => {
                "this member installed a snapshot of the whole state; list it again and watch anew"
                    .to_owned()
            }
            Err(RecvError::Lagged(n)) => format!(
                "the watcher fell {n} applies behind and missed events; list the state again and watch anew"
            ),
            // The member is stopping.
            Err(RecvError::Closed) => return,
        };
        debug!(reason = %lost, "event stream ends");
        let _ = tx.send(Err(Status::data_loss(lost))).await;
        return;
    }
}

impl ControlService {
    /// `WatchEvents`: answered by this member from its own applied state.
    pub(super) fn watch_events_rpc(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.accept(&request, "WatchEvents")?;
        let filter = Filter::new(request.into_inner())?;
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        tokio::spawn(pump(
            self.reader.subscribe(),
            self.raft.metrics(),
            filter,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn change(key: &str, value: Option<&str>, existed: bool) -> Change {
        Change {
            key: key.to_owned(),
            index: 9,
            value: value.map(|v| v.as_bytes().to_vec()),
            existed,
        }
    }

    #[test]
    fn unspecified_or_unknown_kinds_are_refused() {
        for bad in [0, 42] {
            let request = WatchEventsRequest {
                kinds: vec![bad],
                service: String::new(),
            };
            let status = Filter::new(request).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("not an event kind"), "{status:?}");
        }
    }

    #[test]
    fn other_keys_and_unwanted_kinds_give_no_event() {
        let all = Filter::new(WatchEventsRequest::default()).unwrap();
        let tokens = change("tokens/agent", Some("{}"), false);
        assert_eq!(to_event(&tokens, &all, 1).unwrap(), None);
        let nodes_only = Filter {
            kinds: vec![EventKind::Node],
            service: String::new(),
        };
        let removed_task = change("tasks/t1", None, true);
        assert_eq!(to_event(&removed_task, &nodes_only, 1).unwrap(), None);
        let event = to_event(&removed_task, &all, 1).unwrap().unwrap();
        assert_eq!(event.action(), EventAction::Removed);
        assert_eq!(event.kind(), EventKind::Task);
        assert_eq!((event.name.as_str(), event.index), ("t1", 9));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_gets_data_loss_and_a_stopping_member_unavailable() {
        let (feed, changes) = broadcast::channel(2);
        let (metrics_tx, metrics) = watch::channel(RaftMetrics::new_initial(1));
        for _ in 0..5 {
            let batch: Arc<[Change]> = vec![change("nodes/n1", Some("{}"), true)].into();
            feed.send(StoreEvent::Applied(batch)).unwrap();
        }
        let (tx, mut rx) = mpsc::channel(8);
        let all = Filter::new(WatchEventsRequest::default()).unwrap();
        pump(changes, metrics, all.clone(), tx).await;
        let status = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::DataLoss);
        assert!(
            status.message().contains("fell 3 applies behind"),
            "{status:?}"
        );

        let (tx, mut rx) = mpsc::channel(8);
        let stopping = tokio::spawn(pump(feed.subscribe(), metrics_tx.subscribe(), all, tx));
        metrics_tx.send_modify(|m| m.state = ServerState::Shutdown);
        stopping.await.unwrap();
        let status = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn a_corrupt_record_is_an_internal_error_naming_the_key() {
        let all = Filter::new(WatchEventsRequest::default()).unwrap();
        let status = to_event(&change("services/web", Some("{"), false), &all, 1).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("services/web"), "{status:?}");
    }
}
