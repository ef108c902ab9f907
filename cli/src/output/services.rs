//! `berth ls`: one line per service with its running and desired tasks.

use berth_proto::v1;

use super::model::{ServiceSummary, published_ports};
use super::table::Table;

/// The summary of each service, by name, counting its `tasks`.
pub fn summaries(services: &[v1::Service], tasks: &[v1::Task]) -> Vec<ServiceSummary> {
    let mut out: Vec<ServiceSummary> = services
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let mine = tasks.iter().filter(|t| t.service == spec.name);
            let meant: Vec<&v1::Task> = mine
                .filter(|t| t.desired() == v1::TaskDesiredState::Running)
                .collect();
            let running = meant
                .iter()
                .filter(|t| t.observed() == v1::TaskState::Running)
                .count();
            ServiceSummary {
                name: spec.name.clone(),
                mode: if spec.global { "global" } else { "replicated" },
                running: u32::try_from(running).unwrap_or(u32::MAX),
                desired: if spec.global {
                    u32::try_from(meant.len()).unwrap_or(u32::MAX)
                } else {
                    spec.replicas
                },
                image: spec.image.clone(),
                ports: published_ports(s, &spec),
                version: s.version,
                vip: s.vip.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The `ls` table.
pub fn table(summaries: &[ServiceSummary]) -> String {
    let mut t = Table::new(&["NAME", "MODE", "REPLICAS", "IMAGE", "VIP", "PORTS"]);
    for s in summaries {
        t.row(vec![
            s.name.clone(),
            s.mode.to_owned(),
            format!("{}/{}", s.running, s.desired),
            s.image.clone(),
            s.vip.clone(),
            s.ports.join(","),
        ]);
    }
    t.render()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::output::golden;

    pub(crate) fn spec(name: &str, replicas: u32, global: bool) -> v1::ServiceSpec {
        v1::ServiceSpec {
            name: name.into(),
            image: format!("example/{name}:1.0"),
            replicas,
            global,
            ..Default::default()
        }
    }

    pub(crate) fn task(
        id: &str,
        service: &str,
        slot: u32,
        node: &str,
        desired: v1::TaskDesiredState,
        state: v1::TaskState,
        updated: i64,
    ) -> v1::Task {
        v1::Task {
            id: id.into(),
            service: service.into(),
            slot,
            spec_version: 1,
            node: node.into(),
            desired: desired as i32,
            observed: state as i32,
            created_at: updated - 1_000_000_000,
            updated_at: updated,
            ..Default::default()
        }
    }

    pub(crate) fn fixture() -> (Vec<v1::Service>, Vec<v1::Task>) {
        use v1::TaskDesiredState::{Running as R, Shutdown as S};
        use v1::TaskState::*;
        let mut web = spec("web", 3, false);
        web.ports = vec![
            v1::ServicePort {
                target: 80,
                published: 8080,
                protocol: v1::Protocol::Tcp as i32,
                ..Default::default()
            },
            v1::ServicePort {
                target: 53,
                published: 0,
                protocol: v1::Protocol::Udp as i32,
                ..Default::default()
            },
        ];
        let services = vec![
            v1::Service {
                spec: Some(web),
                version: 2,
                vip: "10.201.18.7".into(),
                ..Default::default()
            },
            v1::Service {
                spec: Some(spec("monitor", 0, true)),
                version: 1,
                ..Default::default()
            },
            v1::Service {
                spec: Some(spec("api", 2, false)),
                version: 5,
                ..Default::default()
            },
        ];
        const T: i64 = 1_000_000_000_000_000_000;
        let mut failed = task(
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "web",
            2,
            "n2",
            S,
            Failed,
            T - 400_000_000_000,
        );
        failed.has_exit_code = true;
        failed.exit_code = 1;
        failed.reason =
            "exited with code 1 (a long reason that goes on and on past the column)".into();
        let mut pulling = task(
            "0190f3a40a0b0c0d0e0f101112131415",
            "web",
            3,
            "n1",
            R,
            Starting,
            T - 2_000_000_000,
        );
        pulling.reason = "pulling image reg:5000/web:2: 12.0 of 40.0 MiB, 3 of 5 layers".into();
        let mut pending = task(
            "0190f3a3c1d2e3f4a5b6c7d8e9f0a1b2",
            "api",
            2,
            "",
            R,
            Pending,
            T - 5_000_000_000,
        );
        pending.reason = "no node has 4 CPUs free".into();
        let mut healthy = task(
            "0190f3a2b4c5d6e7a1b2c3d4e5f60718",
            "web",
            1,
            "n1",
            R,
            Running,
            T - 300_000_000_000,
        );
        healthy.health = v1::TaskHealth::Healthy.into();
        let mut checking = task(
            "0190f3a2b9e8d7c6b5a4f3e2d1c0b9a8",
            "web",
            2,
            "n2",
            R,
            Running,
            T - 60_000_000_000,
        );
        checking.health = v1::TaskHealth::Starting.into();
        let tasks = vec![
            healthy,
            checking,
            failed,
            pulling,
            task(
                "0190f3a51f2e3d4c5b6a79881726354d",
                "monitor",
                0,
                "n1",
                R,
                Running,
                T - 7_200_000_000_000,
            ),
            task(
                "0190f3a6aabbccddeeff001122334455",
                "monitor",
                0,
                "n2",
                R,
                Running,
                T - 7_200_000_000_000,
            ),
            task(
                "0190f3a7deadbeefcafef00d12345678",
                "api",
                1,
                "n2",
                R,
                Running,
                T - 90_000_000_000,
            ),
            pending,
        ];
        (services, tasks)
    }

    #[test]
    fn ls_table() {
        let (services, tasks) = fixture();
        golden::check("ls.txt", &table(&summaries(&services, &tasks)));
    }

    #[test]
    fn ls_counts_running_tasks_meant_to_run() {
        let (services, tasks) = fixture();
        let s = summaries(&services, &tasks);
        let web = s.iter().find(|s| s.name == "web").expect("web");
        assert_eq!((web.running, web.desired), (2, 3));
        let monitor = s.iter().find(|s| s.name == "monitor").expect("monitor");
        assert_eq!((monitor.running, monitor.desired), (2, 2));
    }

    #[test]
    fn an_empty_ls_is_the_header() {
        assert_eq!(table(&[]), "NAME   MODE   REPLICAS   IMAGE   VIP   PORTS\n");
    }
}
