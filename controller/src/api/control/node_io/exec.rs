//! `Control.Exec`: a process in a running task's container, on whichever node runs it.

use berth_proto::v1::node_request::Op;
use berth_proto::v1::{
    AttachDown, ExecRequest, ExecResponse, ExecStart, ExecStarted, NodeExec, attach_down,
    attach_up, exec_request, exec_response,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::{Boxed, ControlService, Located, failure_status, state_words};
use crate::api::control::error::ControlError;
use crate::api::relay::Attached;
use crate::state::ObservedState;

/// The answer stream of `Exec`.
pub type ExecStream = Boxed<ExecResponse>;

impl ControlService {
    /// `Exec`: answered here when this member leads, else forwarded, input and all.
    pub(in crate::api::control) async fn exec_rpc(
        &self,
        request: Request<Streaming<ExecRequest>>,
    ) -> Result<Response<ExecStream>, Status> {
        let forwarded = self.accept(&request, "Exec")?;
        let mut input = request.into_inner();
        if let Err(e) = self.ensure_leading() {
            let forward = self.forward_to(e, forwarded)?;
            let frames = tokio_stream::StreamExt::map_while(input, Result::ok);
            let request = self.forwarded_stream(frames);
            let answer = forward
                .call(|mut client| async move { client.exec(request).await })
                .await?;
            let stream: ExecStream = Box::pin(answer.into_inner());
            return Ok(Response::new(stream));
        }
        let start = match input.next().await {
            Some(Ok(ExecRequest {
                frame: Some(exec_request::Frame::Start(start)),
            })) => start,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(ControlError::BadStream(
                    "the first frame of Exec must be `start`, naming the task and the command"
                        .into(),
                )
                .into());
            }
        };
        let (task, attached) = self.exec_open(start).await?;
        let (tx, rx) = mpsc::channel(16);
        let started = ExecResponse {
            frame: Some(exec_response::Frame::Started(ExecStarted {
                task_id: task.task.id.clone(),
                node_id: task.node.clone().unwrap_or_default(),
                hostname: task.hostname.clone(),
            })),
        };
        let _ = tx.send(Ok(started)).await;
        tokio::spawn(pump_input(input, attached.down.clone()));
        tokio::spawn(pump_output(task, attached, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// The running task `start` names, and the node's side of its exec.
    async fn exec_open(&self, start: ExecStart) -> Result<(Located, Attached), ControlError> {
        let relay = self.node_relay()?;
        let spec = start.spec.unwrap_or_default();
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(ControlError::BadStream(
                "exec needs a command to run".into(),
            ));
        }
        let target = self.resolve(&start.target).await?;
        let service = target.service.clone();
        let task = match target
            .tasks
            .iter()
            .find(|t| t.task.observed == ObservedState::Running)
        {
            Some(t) => t.clone(),
            None => {
                let (task, state) = match target.tasks.last() {
                    Some(t) => (t.task.id.clone(), state_words(t.task.observed)),
                    None => ("(none)".to_owned(), "absent".to_owned()),
                };
                return Err(ControlError::NotRunning {
                    task,
                    state,
                    service,
                });
            }
        };
        let node = task.node.clone().unwrap_or_default();
        let op = Op::Exec(NodeExec {
            task_id: task.task.id.clone(),
            spec: Some(spec),
        });
        let attached = relay.open(&node, op).await?;
        debug!(task = %task.task.id, node, "exec relayed");
        Ok((task, attached))
    }
}

/// The client's input to the node, until the client closes it. A client that fails (goes
/// away) ends the node's side too: the output pump stops and drops its sender.
async fn pump_input(mut input: Streaming<ExecRequest>, down: mpsc::Sender<AttachDown>) {
    loop {
        let frame = match input.next().await {
            Some(Ok(ExecRequest { frame: Some(f) })) => match f {
                exec_request::Frame::Stdin(b) => attach_down::Frame::Stdin(b),
                exec_request::Frame::StdinEnd(_) => attach_down::Frame::StdinEnd(true),
                exec_request::Frame::Resize(s) => attach_down::Frame::Resize(s),
                exec_request::Frame::Start(_) => continue,
            },
            Some(Ok(ExecRequest { frame: None })) => continue,
            // Input closed: the process gets end-of-file; its output still flows.
            None => attach_down::Frame::StdinEnd(true),
            Some(Err(_)) => return,
        };
        let end = matches!(frame, attach_down::Frame::StdinEnd(_));
        if down.send(AttachDown { frame: Some(frame) }).await.is_err() || end {
            return;
        }
    }
}

/// The node's output to the client, until the exit frame, a failure, or the client leaves.
async fn pump_output(
    task: Located,
    attached: Attached,
    tx: mpsc::Sender<Result<ExecResponse, Status>>,
) {
    let Attached { mut up, down } = attached;
    loop {
        let next = tokio::select! {
            next = up.next() => next,
            () = tx.closed() => break,
        };
        let answer = match next {
            Some(Ok(frame)) => match frame.frame {
                Some(attach_up::Frame::Stdout(b)) => Ok(exec_response::Frame::Stdout(b)),
                Some(attach_up::Frame::Stderr(b)) => Ok(exec_response::Frame::Stderr(b)),
                Some(attach_up::Frame::Exit(e)) => Ok(exec_response::Frame::Exit(e)),
                Some(attach_up::Frame::Failure(f)) => Err(failure_status(&task.hostname, &f)),
                _ => continue,
            },
            Some(Err(s)) => Err(Status::unavailable(format!(
                "the exec's stream from node {} broke: {}",
                task.hostname,
                s.message()
            ))),
            None => Err(Status::unavailable(format!(
                "node {} ended the exec without an exit code",
                task.hostname
            ))),
        };
        let last = !matches!(
            answer,
            Ok(exec_response::Frame::Stdout(_) | exec_response::Frame::Stderr(_))
        );
        let answer = answer.map(|f| ExecResponse { frame: Some(f) });
        if tx.send(answer).await.is_err() || last {
            break;
        }
    }
    drop(down);
}
