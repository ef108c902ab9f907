//! `berth node ls`: one line per node.

use berth_proto::v1;

use super::model::NodeView;
use super::table::Table;
use super::time::age;

/// The `node ls` table; `now` (Unix nanoseconds) for the heartbeat ages.
pub fn table(nodes: &[v1::Node], now: i64) -> String {
    let mut sorted: Vec<&v1::Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| (&a.hostname, &a.id).cmp(&(&b.hostname, &b.id)));
    let mut t = Table::new(&[
        "ID",
        "HOSTNAME",
        "STATUS",
        "AVAILABILITY",
        "ADDRESS",
        "LAST SEEN",
        "LABELS",
    ]);
    for n in sorted {
        let v = NodeView::from(n);
        let seen = age(now, n.last_seen);
        t.row(vec![
            v.id,
            v.hostname,
            v.status.to_owned(),
            v.availability.to_owned(),
            v.address,
            if seen.is_empty() {
                "never".to_owned()
            } else {
                format!("{seen} ago")
            },
            v.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::golden;

    const T: i64 = 1_000_000_000_000_000_000;

    #[test]
    fn node_ls_table() {
        let nodes = vec![
            v1::Node {
                id: "b7c1e0f2a9d34c55".into(),
                hostname: "worker-2".into(),
                address: "10.0.0.12".into(),
                status: v1::NodeStatus::Down as i32,
                availability: v1::NodeAvailability::Drain as i32,
                last_seen: T - 600_000_000_000,
                ..Default::default()
            },
            v1::Node {
                id: "3e2a91c0d7f84b10".into(),
                hostname: "worker-1".into(),
                address: "10.0.0.11".into(),
                labels: [("disk".into(), "ssd".into()), ("zone".into(), "a".into())].into(),
                status: v1::NodeStatus::Ready as i32,
                availability: v1::NodeAvailability::Active as i32,
                last_seen: T - 1_000_000_000,
                ..Default::default()
            },
        ];
        golden::check("node-ls.txt", &table(&nodes, T));
    }
}
