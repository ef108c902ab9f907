//! The agent daemon (`berth-agent serve`).
//!
//! For now it adopts the node's containers and reports their transitions: on start it reads
//! every container's monitor record and compares it with what it last saw (kept in
//! `agent/seen.json`), so exits that happened while it was down are reported too. Each
//! transition is logged and appended to `agent/events.jsonl`. The session with the
//! controllers will grow from here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::container::{ContainerError, ContainerManager};

/// What the daemon last saw of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Status text.
    pub status: String,
    /// Pid of the first process.
    pub pid: Option<i32>,
    /// Exit code of the last run.
    pub exit_code: Option<i32>,
    /// Restart count.
    pub restart_count: u32,
}

/// One reported transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 time the daemon noticed it.
    pub time: String,
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// `adopted`, `started`, `exited`, `restarting`, `removed`.
    pub action: String,
    /// Status after the transition.
    pub status: String,
    /// Exit code, for exits.
    pub exit_code: Option<i32>,
    /// Exit reason, for exits.
    pub reason: Option<String>,
    /// True when the transition happened while no daemon was running.
    pub while_down: bool,
}

/// What the daemon sees of one container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Container name.
    pub name: String,
    /// Status and exit.
    pub seen: Seen,
    /// Exit reason text, when exited.
    pub reason: Option<String>,
}

fn agent_dir(m: &ContainerManager) -> PathBuf {
    m.config().state_dir.join("agent")
}

/// Compares what was seen with what is, returning the events (pure; unit-tested).
pub fn diff(
    before: &BTreeMap<String, Seen>,
    now: &BTreeMap<String, Observation>,
    first_pass: bool,
    time: &str,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (id, Observation { name, seen, reason }) in now {
        let action = match before.get(id) {
            // Unknown to the record: it appeared since the last save (which a crash may have
            // prevented). One that already ended is reported as an exit, with its code.
            None if seen.status.starts_with("exited") => Some("exited"),
            None if first_pass => Some("adopted"),
            None => Some(if seen.status == "running" {
                "started"
            } else {
                "created"
            }),
            Some(old) if old == seen => None,
            Some(old) => {
                if seen.status == "running" && (old.status != "running" || old.pid != seen.pid) {
                    Some("started")
                } else if seen.status == "restarting" {
                    Some("restarting")
                } else if seen.status.starts_with("exited") && !old.status.starts_with("exited") {
                    Some("exited")
                } else {
                    None
                }
            }
        };
        if let Some(action) = action {
            let exited =
                action == "exited" || (action == "adopted" && seen.status.starts_with("exited"));
            events.push(Event {
                time: time.to_string(),
                id: id.clone(),
                name: name.clone(),
                action: action.to_string(),
                status: seen.status.clone(),
                exit_code: if exited { seen.exit_code } else { None },
                reason: if exited { reason.clone() } else { None },
                while_down: first_pass && action != "adopted",
            });
        }
    }
    for id in before.keys().filter(|id| !now.contains_key(*id)) {
        events.push(Event {
            time: time.to_string(),
            id: id.clone(),
            name: String::new(),
            action: "removed".into(),
            status: "removed".into(),
            exit_code: None,
            reason: None,
            while_down: first_pass,
        });
    }
    events
}

fn observe(m: &ContainerManager) -> Result<BTreeMap<String, Observation>, ContainerError> {
    Ok(m.list(true)?
        .into_iter()
        .map(|c| {
            let seen = Seen {
                status: c.status(),
                pid: c.state.pid,
                exit_code: c.state.exit_code,
                restart_count: c.state.restart_count,
            };
            let reason = c.state.exit_reason.as_ref().map(|r| r.to_string());
            (
                c.spec.id.clone(),
                Observation {
                    name: c.spec.name.clone(),
                    seen,
                    reason,
                },
            )
        })
        .collect())
}

/// Runs the daemon until killed.
pub fn serve(m: &ContainerManager, poll_ms: u64) -> anyhow::Result<u8> {
    let dir = agent_dir(m);
    fs::create_dir_all(&dir)?;
    let seen_path = dir.join("seen.json");
    let mut before: BTreeMap<String, Seen> = fs::read(&seen_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let had_record = seen_path.exists();
    let mut events_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.jsonl"))?;
    info!(state_dir = %m.config().state_dir.display(), "agent started");
    // What a crashed agent (or a container whose monitor died) left on the node network.
    match m.reconcile_network() {
        Ok(r) => info!(
            addresses = r.addresses.len(),
            rule_owners = r.rule_owners.len(),
            veths = r.veths.len(),
            "node network reconciled"
        ),
        Err(e) => tracing::warn!(error = %e, "reconciling the node network"),
    }
    let mut first = true;
    loop {
        let now = observe(m)?;
        let time = berth_runtime::time::rfc3339_nanos(berth_runtime::time::now_unix_nanos());
        let events = diff(&before, &now, first, &time);
        // On a restart with a record, the first pass reports what changed while down.
        let events: Vec<Event> = events
            .into_iter()
            .map(|mut e| {
                e.while_down = first && had_record;
                e
            })
            .collect();
        for e in &events {
            info!(container = %e.id, name = %e.name, action = %e.action, status = %e.status,
                  exit_code = ?e.exit_code, while_down = e.while_down, "container {}", e.action);
            writeln!(events_file, "{}", serde_json::to_string(e)?)?;
        }
        if first {
            for (id, Observation { name, seen, .. }) in &now {
                if seen.status == "running" {
                    info!(container = %id, name = %name, pid = ?seen.pid, "adopted running container");
                }
            }
        }
        events_file.flush()?;
        before = now.into_iter().map(|(k, o)| (k, o.seen)).collect();
        berth_runtime::state::write_atomic(&seen_path, &serde_json::to_vec(&before)?)?;
        first = false;
        std::thread::sleep(Duration::from_millis(poll_ms));
    }
}

/// Prints the recorded events (and new ones with `follow`).
pub fn print_events(m: &ContainerManager, follow: bool) -> anyhow::Result<u8> {
    let path = agent_dir(m).join("events.jsonl");
    let f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(0),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "open {}: {e} (is `berth-agent serve` running?)",
                path.display()
            ));
        }
    };
    let mut r = BufReader::new(f);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            if !follow {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        print!("{line}");
        std::io::stdout().flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(name: &str, seen: Seen, reason: Option<&str>) -> Observation {
        Observation {
            name: name.into(),
            seen,
            reason: reason.map(String::from),
        }
    }

    fn s(status: &str, pid: Option<i32>, code: Option<i32>) -> Seen {
        Seen {
            status: status.into(),
            pid,
            exit_code: code,
            restart_count: 0,
        }
    }

    #[test]
    fn reports_exits_that_happened_while_down() {
        let before: BTreeMap<_, _> = [("a".to_string(), s("running", Some(10), None))].into();
        let exited = obs("web", s("exited", None, Some(3)), Some("exited"));
        let now: BTreeMap<_, _> = [("a".to_string(), exited)].into();
        let ev = diff(&before, &now, false, "t");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].action, "exited");
        assert_eq!(ev[0].exit_code, Some(3));
    }

    #[test]
    fn a_container_that_came_and_went_unrecorded_is_reported_as_exited() {
        // The daemon died after logging a start but before saving its record.
        let gone = obs("short", s("exited", None, Some(7)), Some("exited"));
        let now: BTreeMap<_, _> = [("a".to_string(), gone)].into();
        for first_pass in [true, false] {
            let ev = diff(&BTreeMap::new(), &now, first_pass, "t");
            assert_eq!(ev.len(), 1);
            assert_eq!(ev[0].action, "exited");
            assert_eq!(ev[0].exit_code, Some(7));
        }
    }

    #[test]
    fn adopts_on_first_pass_and_reports_removal() {
        let running = obs("web", s("running", Some(1), None), None);
        let now: BTreeMap<_, _> = [("a".to_string(), running)].into();
        let ev = diff(&BTreeMap::new(), &now, true, "t");
        assert_eq!(ev[0].action, "adopted");
        let before: BTreeMap<_, _> = [("b".to_string(), s("running", Some(2), None))].into();
        let ev = diff(&before, &BTreeMap::new(), false, "t");
        assert_eq!(ev[0].action, "removed");
        let same: BTreeMap<_, _> =
            [("b".to_string(), obs("x", s("running", Some(2), None), None))].into();
        assert!(diff(&before, &same, false, "t").is_empty());
    }
}
