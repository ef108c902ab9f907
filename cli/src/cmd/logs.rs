//! `berth logs`: a service's or a task's output, from whichever nodes run them, through the
//! controllers.

use std::collections::BTreeMap;
use std::io::Write;

use berth_proto::v1;
use serde::Serialize;

use super::Io;
use crate::args::{GlobalArgs, LogsArgs};
use crate::client::{Client, status_reason};
use crate::error::CliError;
use crate::output::model::{node_names, task_name};
use crate::output::{self, OutputFormat};

/// One line as `-o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineView {
    /// When it was written (RFC 3339, nanoseconds).
    pub time: String,
    /// The task's id.
    pub task: String,
    /// `web.2@node1`.
    pub name: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without its newline.
    pub line: String,
}

/// Task id → `web.2@node1`, for the prefixes.
async fn task_names(client: &Client, target: &str) -> BTreeMap<String, String> {
    let tasks = client
        .call("list the tasks", |mut c| async move {
            c.list_tasks(v1::ListTasksRequest {
                service: String::new(),
                stale: true,
            })
            .await
        })
        .await;
    let nodes = client
        .call("list the nodes", |mut c| async move {
            c.list_nodes(v1::ListNodesRequest { stale: true }).await
        })
        .await;
    let (Ok(tasks), Ok(nodes)) = (tasks, nodes) else {
        return BTreeMap::new();
    };
    let names = node_names(&nodes.nodes);
    tasks
        .tasks
        .iter()
        .filter(|t| t.service == target || t.id.starts_with(target))
        .map(|t| {
            let node = names.get(&t.node).cloned().unwrap_or_default();
            let mut name = task_name(t, &node);
            if t.slot != 0 && !node.is_empty() {
                name = format!("{name}@{node}");
            }
            (t.id.clone(), name)
        })
        .collect()
}

/// The text form of `line`.
fn text(line: &v1::LogLine, prefix: Option<&str>, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(p) = prefix {
        out.extend_from_slice(format!("{p} | ").as_bytes());
    }
    if timestamps {
        out.extend_from_slice(format!("{} ", rfc3339_nanos(line.time)).as_bytes());
    }
    out.extend_from_slice(&line.line);
    if !line.line.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

fn rfc3339_nanos(t: i64) -> String {
    berth_runtime::time::rfc3339_nanos(i128::from(t))
}

/// Runs `berth logs`.
pub async fn run(g: &GlobalArgs, args: &LogsArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let request = v1::LogsRequest {
        target: args.target.clone(),
        options: Some(v1::LogsOptions {
            follow: args.follow,
            tail: args.tail.unwrap_or(0),
            since: args.since.unwrap_or(0),
        }),
    };
    let mut stream = client
        .call(&format!("show the logs of {}", args.target), |mut c| {
            let request = request.clone();
            async move { c.logs(request).await }
        })
        .await?;
    let names = if args.no_prefix && args.output == OutputFormat::Text {
        BTreeMap::new()
    } else {
        task_names(&client, &args.target).await
    };
    // A service's lines say which task wrote them; one task's need not.
    let prefixed = !args.no_prefix && !names.keys().any(|id| id.starts_with(&args.target));
    // (Without names, a service's lines get a short task id as their prefix.)
    loop {
        let answer = match stream.message().await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(s) => {
                return Err(CliError::StreamEnded(status_reason(&s)));
            }
        };
        for w in &answer.warnings {
            io.note(&format!("warning: {w}\n"));
        }
        for line in &answer.lines {
            let name = names
                .get(&line.task_id)
                .cloned()
                .unwrap_or_else(|| line.task_id.chars().take(12).collect());
            match args.output {
                OutputFormat::Text => {
                    let prefix = prefixed.then_some(name.as_str());
                    let bytes = text(line, prefix, args.timestamps);
                    let w: &mut dyn Write = if line.stream() == v1::OutputStream::Stderr {
                        &mut *io.err
                    } else {
                        &mut *io.out
                    };
                    w.write_all(&bytes).map_err(CliError::Write)?;
                }
                OutputFormat::Json | OutputFormat::Yaml => {
                    let view = LineView {
                        time: rfc3339_nanos(line.time),
                        task: line.task_id.clone(),
                        name,
                        stream: if line.stream() == v1::OutputStream::Stderr {
                            "stderr"
                        } else {
                            "stdout"
                        },
                        line: String::from_utf8_lossy(&line.line)
                            .trim_end_matches('\n')
                            .to_owned(),
                    };
                    let text = match args.output {
                        OutputFormat::Json => output::to_json_line(&view)?,
                        _ => format!("---\n{}", output::to_yaml(&view)?),
                    };
                    io.print(&text)?;
                }
            }
        }
        io.out.flush().map_err(CliError::Write)?;
        let _ = io.err.flush();
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gets_its_prefix_and_time_and_one_newline() {
        let line = v1::LogLine {
            task_id: "t1".into(),
            time: 1_796_399_627_000_000_000,
            stream: v1::OutputStream::Stdout as i32,
            line: b"hello".to_vec(),
        };
        assert_eq!(text(&line, None, false), b"hello\n");
        assert_eq!(
            String::from_utf8(text(&line, Some("web.1@n1"), true)).unwrap(),
            "web.1@n1 | 2026-12-04T15:53:47.000000000Z hello\n"
        );
    }
}
