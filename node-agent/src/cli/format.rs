//! Tables and JSON for the command line.

use berth_runtime::state::Status;
use berth_runtime::time::{now_unix_nanos, rfc3339_nanos};
use serde_json::{Value, json};

use crate::container::ContainerInfo;

/// "3 seconds", "2 minutes", "5 hours", "4 days".
pub fn human_duration(nanos: i128) -> String {
    let s = (nanos / 1_000_000_000).max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Docker-style status column.
pub fn status_text(c: &ContainerInfo, now: i128) -> String {
    let st = &c.state;
    match st.status {
        Status::Created => "Created".into(),
        Status::Running if c.monitor_alive => {
            format!("Up {}", human_duration(now - st.started_at.unwrap_or(now)))
        }
        Status::Restarting if c.monitor_alive => format!(
            "Restarting ({}) {} ago",
            st.exit_code.unwrap_or(0),
            human_duration(now - st.finished_at.unwrap_or(now))
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago{}",
            st.exit_code.unwrap_or(0),
            human_duration(now - st.finished_at.unwrap_or(now)),
            match &st.exit_reason {
                Some(berth_runtime::state::ExitReason::Oom) => " (OOM killed)",
                _ => "",
            }
        ),
        _ => c.status(),
    }
}

/// `ps` as an aligned table.
pub fn ps_table(list: &[ContainerInfo]) -> String {
    let now = now_unix_nanos();
    let mut rows = vec![
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in list {
        let mut cmd = c.spec.args.join(" ");
        if cmd.chars().count() > 20 {
            cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
        }
        let created = c
            .state
            .start_requested_at
            .map(|t| format!("{} ago", human_duration(now - t)))
            .unwrap_or_default();
        rows.push(vec![
            c.spec.id[..12].to_string(),
            c.spec.image.clone(),
            format!("\"{cmd}\""),
            created,
            status_text(c, now),
            ports_text(c),
            c.spec.name.clone(),
        ]);
    }
    table(&rows)
}

/// Published ports as Docker's `ps` shows them: `0.0.0.0:8080->80/tcp, …`.
pub fn ports_text(c: &ContainerInfo) -> String {
    c.network
        .iter()
        .flat_map(|n| &n.ports)
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip
                    .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Left-aligned columns separated by three spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn time(t: Option<i128>) -> Value {
    t.map(|t| Value::String(rfc3339_nanos(t)))
        .unwrap_or(Value::Null)
}

/// A container for `inspect` / `ps -o json`.
pub fn container_json(c: &ContainerInfo) -> Value {
    let s = &c.state;
    json!({
        "Id": c.spec.id,
        "Name": c.spec.name,
        "Image": c.spec.image,
        "ImageId": c.spec.image_id,
        "Status": c.status(),
        "State": {
            "Status": s.status,
            "Pid": s.pid,
            "MonitorPid": s.monitor_pid,
            "MonitorAlive": c.monitor_alive,
            "ExitCode": s.exit_code,
            "ExitReason": s.exit_reason,
            "OOMKilled": matches!(s.exit_reason, Some(berth_runtime::state::ExitReason::Oom)),
            "StartRequestedAt": time(s.start_requested_at),
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
            "RestartCount": s.restart_count,
            "NextRestartAt": time(s.next_restart_at),
        },
        "NetworkSettings": c.network.as_ref().map(|n| json!({
            "Bridge": n.config.bridge,
            "IPAddress": n.ip,
            "IPPrefixLen": n.config.subnet.prefix_len(),
            "Gateway": n.gateway,
            "Veth": n.veth,
            "Ports": n.ports.iter().map(|p| json!({
                "HostIp": p.host_ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string()),
                "HostPort": p.host_port,
                "ContainerPort": p.container_port,
                "Protocol": p.protocol,
            })).collect::<Vec<_>>(),
        })),
        "Spec": c.spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5_000_000_000), "5 seconds");
        assert_eq!(human_duration(90_000_000_000), "About a minute");
        assert_eq!(human_duration(600_000_000_000), "10 minutes");
        assert_eq!(human_duration(3 * 86_400 * 1_000_000_000), "3 days");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["A".to_string(), "LONG HEADER".to_string(), "C".to_string()],
            vec!["value".to_string(), "x".to_string(), "".to_string()],
        ];
        assert_eq!(table(&rows), "A       LONG HEADER   C\nvalue   x\n");
    }
}
