//! A task's log lines: the stored ones, then, when following, new ones until its container
//! stops or the client leaves.

use std::sync::Arc;

use berth_proto::v1::{LogBatch, LogLine, NodeLogs, OutputStream, attach_up};
use berth_runtime::logs::{Record, Stream};
use berth_runtime::time::parse_rfc3339;
use tokio::sync::mpsc;
use tonic::Code;

use super::Up;
use crate::container::LogOptions;
use crate::node::runtime::RuntimeExecutor;

/// How many lines one frame carries at most.
const BATCH_LINES: usize = 512;

fn line(task_id: &str, r: &Record) -> LogLine {
    LogLine {
        task_id: task_id.to_owned(),
        time: parse_rfc3339(&r.time).map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)),
        stream: match r.stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        } as i32,
        line: r.log.clone().into_bytes(),
    }
}

/// Serves `Logs` of one task.
pub(super) async fn serve(ex: Arc<RuntimeExecutor>, r: NodeLogs, up: Up) {
    let options = r.options.unwrap_or_default();
    let opts = LogOptions {
        follow: options.follow,
        timestamps: false,
        tail: (options.tail > 0).then_some(options.tail as usize),
        since: (options.since > 0).then_some(i128::from(options.since)),
    };
    let (tx, mut rx) = mpsc::channel::<Vec<LogLine>>(8);
    let task_id = r.task_id.clone();
    let reading = tokio::task::spawn_blocking(move || {
        let name = match ex.container_of(&task_id) {
            Ok(Some(name)) => name,
            Ok(None) => {
                return Err((
                    Code::NotFound,
                    format!("task {task_id} has no container on this node (it was removed)"),
                ));
            }
            Err(e) => return Err((Code::Internal, e.to_string())),
        };
        let m = ex.manager();
        m.each_log(&name, &opts, &mut |records| {
            for chunk in records.chunks(BATCH_LINES) {
                let lines = chunk.iter().map(|r| line(&task_id, r)).collect();
                if tx.blocking_send(lines).is_err() {
                    return false;
                }
            }
            !tx.is_closed()
        })
        .map_err(|e| (Code::Internal, e.to_string()))
    });
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(lines) => {
                    if !up.send(attach_up::Frame::Logs(LogBatch { lines })).await {
                        break;
                    }
                }
                None => break,
            },
            () = up.closed() => break,
        }
    }
    // Dropping the receiver stops a follower at its next poll.
    drop(rx);
    match reading.await {
        Ok(Ok(())) => {}
        Ok(Err((code, message))) => up.fail(code, message).await,
        Err(e) => up.fail(Code::Internal, e.to_string()).await,
    }
}
