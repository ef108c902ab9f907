//! `berth events`: the cluster's changes as they happen, one line each (`-o json`: one
//! JSON object per line), until interrupted.

use berth_proto::v1;
use serde::Serialize;

use super::Io;
use crate::args::{EventsArgs, GlobalArgs};
use crate::client::status_reason;
use crate::error::CliError;
use crate::output::model::{availability_word, desired_word, state_word, status_word, task_name};
use crate::output::{self, OutputFormat, time::rfc3339};

/// One event as `-o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLine {
    /// When the answering controller applied it.
    pub time: String,
    /// `service`, `task` or `node`.
    pub kind: &'static str,
    /// `created`, `updated` or `removed`.
    pub action: &'static str,
    /// The service's name, the task's id or the node's id.
    pub name: String,
    /// The log index of the change.
    pub index: u64,
    /// What the record says now, in a few words.
    pub detail: String,
}

impl EventLine {
    /// The line of `e`.
    pub fn new(e: &v1::Event) -> Self {
        let kind = match e.kind() {
            v1::EventKind::Service => "service",
            v1::EventKind::Task => "task",
            v1::EventKind::Node => "node",
            v1::EventKind::Unspecified => "unknown",
        };
        let action = match e.action() {
            v1::EventAction::Created => "created",
            v1::EventAction::Updated => "updated",
            v1::EventAction::Removed => "removed",
            v1::EventAction::Unspecified => "changed",
        };
        let detail = match &e.object {
            Some(v1::event::Object::Service(s)) => {
                let spec = s.spec.clone().unwrap_or_default();
                let mode = if spec.global {
                    "global".to_owned()
                } else {
                    format!("replicas={}", spec.replicas)
                };
                format!("version={} image={} {mode}", s.version, spec.image)
            }
            Some(v1::event::Object::Task(t)) => {
                let mut d = format!(
                    "{} desired={} state={}",
                    task_name(t, ""),
                    desired_word(t.desired()),
                    state_word(t.observed())
                );
                if !t.node.is_empty() {
                    d.push_str(&format!(" node={}", t.node));
                }
                if !t.reason.is_empty() {
                    d.push_str(&format!(" reason={:?}", t.reason));
                }
                d
            }
            Some(v1::event::Object::Node(n)) => format!(
                "{} status={} availability={}",
                n.hostname,
                status_word(n.status()),
                availability_word(n.availability())
            ),
            None => String::new(),
        };
        EventLine {
            time: rfc3339(e.at),
            kind,
            action,
            name: e.name.clone(),
            index: e.index,
            detail,
        }
    }

    /// The text line: `2026-12-04T15:53:47Z task updated 0190… web.1 desired=running ...`.
    pub fn text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.time, self.kind, self.action, self.name, self.detail
        )
        .trim_end()
        .to_owned()
            + "\n"
    }
}

/// Runs `berth events`.
pub async fn run(g: &GlobalArgs, args: &EventsArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let request = v1::WatchEventsRequest {
        kinds: Vec::new(),
        service: args.service.clone().unwrap_or_default(),
    };
    let mut stream = client
        .call("watch the events", |mut c| {
            let request = request.clone();
            async move { c.watch_events(request).await }
        })
        .await?;
    loop {
        match stream.message().await {
            Ok(Some(e)) => {
                let line = EventLine::new(&e);
                let text = match args.output {
                    OutputFormat::Json => output::to_json_line(&line)?,
                    OutputFormat::Yaml => format!("---\n{}", output::to_yaml(&line)?),
                    OutputFormat::Text => line.text(),
                };
                io.print(&text)?;
                io.out.flush().map_err(CliError::Write)?;
            }
            Ok(None) => {
                return Err(CliError::StreamEnded(format!(
                    "the controller at {} closed it",
                    client.addr
                )));
            }
            Err(s) => {
                return Err(CliError::StreamEnded(status_reason(&s)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_event_is_one_line() {
        let e = v1::Event {
            kind: v1::EventKind::Task as i32,
            action: v1::EventAction::Updated as i32,
            name: "00ab".into(),
            index: 42,
            at: 1_796_399_627_000_000_000,
            object: Some(v1::event::Object::Task(v1::Task {
                id: "00ab".into(),
                service: "web".into(),
                slot: 2,
                node: "n1".into(),
                desired: v1::TaskDesiredState::Running as i32,
                observed: v1::TaskState::Running as i32,
                ..Default::default()
            })),
        };
        let line = EventLine::new(&e);
        assert_eq!(
            line.text(),
            "2026-12-04T15:53:47Z task updated 00ab web.2 desired=running state=running node=n1\n"
        );
        let json = output::to_json_line(&line).expect("json");
        assert!(json.starts_with("{\"time\":\"2026-12-04T15:53:47Z\",\"kind\":\"task\""));
    }
}
