//! `Control.Logs`: the log lines of a task or of every task of a service, from their nodes.

use berth_proto::v1::node_request::Op;
use berth_proto::v1::{LogLine, LogsOptions, LogsRequest, LogsResponse, NodeLogs, attach_up};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Boxed, ControlService, Located, failure_status};
use crate::api::control::error::ControlError;
use crate::api::relay::{Attached, Relay};

/// The answer stream of `Logs`.
pub type LogsStream = Boxed<LogsResponse>;

/// How many lines one answer carries at most.
const BATCH_LINES: usize = 512;

impl ControlService {
    /// `Logs`: answered here when this member leads, else forwarded to the leader.
    pub(in crate::api::control) async fn logs_rpc(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<LogsStream>, Status> {
        let forwarded = self.accept(&request, "Logs")?;
        let message = request.into_inner();
        if let Err(e) = self.ensure_leading() {
            let forward = self.forward_to(e, forwarded)?;
            let request = self.forwarded_stream(message);
            let answer = forward
                .call(|mut client| async move { client.logs(request).await })
                .await?;
            let stream: LogsStream = Box::pin(answer.into_inner());
            return Ok(Response::new(stream));
        }
        Ok(Response::new(self.logs_local(message).await?))
    }

    async fn logs_local(&self, message: LogsRequest) -> Result<LogsStream, ControlError> {
        let relay = self.node_relay()?;
        let target = self.resolve(&message.target).await?;
        let mut warnings = Vec::new();
        let mut placed = Vec::new();
        for t in target.tasks {
            match t.node.is_some() {
                true => placed.push(t),
                false if target.service.is_none() => {
                    return Err(ControlError::NeverPlaced(t.task.id));
                }
                false => {}
            }
        }
        if placed.is_empty() && target.service.is_some() {
            warnings.push("the service has no task that was ever placed on a node".to_owned());
        }
        let options = message.options.unwrap_or_default();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(relay_logs(relay, placed, options, warnings, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Opens every task's logs on its node and sends their lines: all of them in time order,
/// then (when following) new lines as they come.
async fn relay_logs(
    relay: Relay,
    tasks: Vec<Located>,
    options: LogsOptions,
    mut warnings: Vec<String>,
    tx: mpsc::Sender<Result<LogsResponse, Status>>,
) {
    let opened = futures::future::join_all(tasks.iter().map(|t| {
        let node = t.node.clone().unwrap_or_default();
        let op = Op::Logs(NodeLogs {
            task_id: t.task.id.clone(),
            options: Some(options),
        });
        let relay = relay.clone();
        async move { relay.open(&node, op).await }
    }))
    .await;
    let mut streams = Vec::new();
    for (t, attached) in tasks.iter().zip(opened) {
        match attached {
            Ok(a) => streams.push((t, a)),
            Err(e) => warnings.push(format!("task {} on {}: {e}", t.task.id, t.hostname)),
        }
    }
    if !warnings.is_empty() {
        let w = LogsResponse {
            lines: vec![],
            warnings: std::mem::take(&mut warnings),
        };
        if tx.send(Ok(w)).await.is_err() {
            return;
        }
    }
    if options.follow {
        follow(streams, tx).await;
    } else {
        collect_sorted(streams, tx).await;
    }
}

/// What one frame of a node's logs call means.
enum Piece {
    Lines(Vec<LogLine>),
    Warning(String),
}

fn piece(t: &Located, frame: Result<berth_proto::v1::AttachUp, Status>) -> Option<Piece> {
    let where_ = || format!("task {} on {}", t.task.id, t.hostname);
    match frame {
        Ok(up) => match up.frame {
            Some(attach_up::Frame::Logs(batch)) => Some(Piece::Lines(batch.lines)),
            Some(attach_up::Frame::Failure(f)) => {
                let s = failure_status(&t.hostname, &f);
                Some(Piece::Warning(format!("{}: {}", where_(), s.message())))
            }
            _ => None,
        },
        Err(s) => Some(Piece::Warning(format!("{}: {}", where_(), s.message()))),
    }
}

/// Reads every stream to its end, then sends the lines in time order.
async fn collect_sorted(
    streams: Vec<(&Located, Attached)>,
    tx: mpsc::Sender<Result<LogsResponse, Status>>,
) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let reads = streams.into_iter().map(|(t, mut a)| async move {
        let mut got = Vec::new();
        while let Some(frame) = a.up.next().await {
            if let Some(p) = piece(t, frame) {
                got.push(p);
            }
        }
        got
    });
    for p in futures::future::join_all(reads).await.into_iter().flatten() {
        match p {
            Piece::Lines(l) => lines.extend(l),
            Piece::Warning(w) => warnings.push(w),
        }
    }
    // Stable: one task's lines of the same instant keep their order.
    lines.sort_by_key(|l| l.time);
    if !warnings.is_empty()
        && tx
            .send(Ok(LogsResponse {
                lines: vec![],
                warnings,
            }))
            .await
            .is_err()
    {
        return;
    }
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        let batch: Vec<LogLine> = lines.by_ref().take(BATCH_LINES).collect();
        if tx
            .send(Ok(LogsResponse {
                lines: batch,
                warnings: vec![],
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Sends lines as they come from any stream, until all end or the caller goes away.
async fn follow(
    streams: Vec<(&Located, Attached)>,
    tx: mpsc::Sender<Result<LogsResponse, Status>>,
) {
    // Keep the senders to the nodes alive while following: dropping one ends its call.
    let mut downs = Vec::new();
    let merged = futures::stream::select_all(streams.into_iter().map(|(t, a)| {
        downs.push(a.down);
        a.up.map(move |frame| piece(t, frame))
    }));
    let mut merged = std::pin::pin!(merged);
    loop {
        tokio::select! {
            next = merged.next() => {
                let answer = match next {
                    None => return,
                    Some(None) => continue,
                    Some(Some(Piece::Lines(lines))) => LogsResponse { lines, warnings: vec![] },
                    Some(Some(Piece::Warning(w))) => LogsResponse { lines: vec![], warnings: vec![w] },
                };
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}
