//! Three real `berth-controller` processes on three hosts of the harness: they elect a
//! leader, a write sent to a follower commits, the leader killed with SIGKILL is replaced
//! within the default timeouts and no acknowledged write is lost, and the killed member comes
//! back and catches up.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1;
use berth_tests::cluster::{Cluster, Host};

const PORT: u16 = 7443;

fn controller_bin() -> PathBuf {
    berth_tests::target_dir().join("berth-controller")
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run berth-controller");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn addr(ip: Ipv4Addr) -> String {
    format!("{ip}:{PORT}")
}

/// `status` of the member on `h`, asked from `h` itself.
fn status(h: &Host, admin_dir: &Path) -> Option<serde_json::Value> {
    let out =
        h.ns.command(controller_bin())
            .args(["status", "--data-dir"])
            .arg(admin_dir)
            .args(["--addr", &addr(h.ip)])
            .output()
            .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The leader every host in `hosts` agrees on, once they do.
fn agreed_leader(hosts: &[&Host], admin_dir: &Path, deadline: Duration) -> (u64, Instant) {
    let until = Instant::now() + deadline;
    loop {
        let leaders: Vec<Option<u64>> = hosts
            .iter()
            .map(|h| status(h, admin_dir).and_then(|s| s["leader_id"].as_u64()))
            .collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) {
                return (*l, Instant::now());
            }
        }
        assert!(Instant::now() < until, "no agreed leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spec(image: &str) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: "web".into(),
        image: image.into(),
        replicas: 3,
        ..Default::default()
    }
}

/// Applies `spec` through the member on `h` (from `h`), with the admin certificate.
fn apply(
    h: &Host,
    admin_dir: &Path,
    spec: v1::ServiceSpec,
    expected: Option<u64>,
) -> Result<u64, String> {
    let ca = std::fs::read_to_string(admin_dir.join("ca/ca.pem")).unwrap();
    let admin = IssuedCert {
        cert_pem: std::fs::read_to_string(admin_dir.join("admin/admin.pem")).unwrap(),
        key_pem: std::fs::read_to_string(admin_dir.join("admin/admin.key")).unwrap(),
    };
    let target = addr(h.ip);
    h.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let connector = MtlsConnector::new(client_config(&ca, &admin).unwrap());
            let channel = connector.channel(&target).map_err(|e| e.to_string())?;
            let mut c = v1::control_client::ControlClient::new(channel);
            let r = c
                .apply_service(v1::ApplyServiceRequest {
                    spec: Some(spec),
                    expected_version: expected,
                })
                .await
                .map_err(|s| s.to_string())?;
            Ok(r.into_inner().service.map(|s| s.version).unwrap_or(0))
        })
    })
}

#[test]
fn three_controllers_elect_fail_over_and_lose_no_acknowledged_write() {
    if !berth_tests::require_root(
        "three_controllers_elect_fail_over_and_lose_no_acknowledged_write",
    ) {
        return;
    }
    let c = Cluster::new(3);
    let dirs: Vec<PathBuf> = c.hosts.iter().map(|h| h.dir.join("ctl")).collect();
    let admin_dir = dirs[0].clone();
    ok(Command::new(controller_bin())
        .args(["init", "--data-dir"])
        .arg(&dirs[0])
        .args(["--id", "1", "--advertise", &addr(c.host(0).ip)]));
    for i in 1..3 {
        ok(Command::new(controller_bin())
            .args(["init-member", "--from"])
            .arg(&dirs[0])
            .arg("--data-dir")
            .arg(&dirs[i])
            .args([
                "--id",
                &(i + 1).to_string(),
                "--advertise",
                &addr(c.host(i).ip),
            ]));
    }
    let bootstrap = (0..3)
        .map(|i| format!("{}={}", i + 1, addr(c.host(i).ip)))
        .collect::<Vec<_>>()
        .join(",");
    for (i, h) in c.hosts.iter().enumerate() {
        let dir = dirs[i].to_str().unwrap();
        let mut args = vec!["run", "--data-dir", dir];
        if i == 0 {
            args.extend(["--bootstrap", &bootstrap]);
        }
        h.spawn("controller", controller_bin(), &args);
    }
    let all: Vec<&Host> = c.hosts.iter().collect();
    let (leader, _) = agreed_leader(&all, &admin_dir, Duration::from_secs(20));

    // A write sent to a follower commits (forwarded to the leader).
    let follower = c
        .hosts
        .iter()
        .find(|h| h.ip != c.host(leader as usize - 1).ip)
        .unwrap();
    assert_eq!(
        apply(follower, &admin_dir, spec("img:1"), Some(0)).unwrap(),
        1
    );

    // The leader killed with SIGKILL: the other two elect another within the default
    // timeouts and commit again; the acknowledged write is still there.
    let old = c.host(leader as usize - 1);
    let killed_at = Instant::now();
    old.kill("controller");
    let rest: Vec<&Host> = c.hosts.iter().filter(|h| h.ip != old.ip).collect();
    let (new_leader, elected_at) = loop {
        let (l, at) = agreed_leader(&rest, &admin_dir, Duration::from_secs(20));
        if l != leader {
            break (l, at);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let failover = elected_at.duration_since(killed_at);
    eprintln!("failover: leader {leader} killed, {new_leader} elected after {failover:?}");
    let v = apply(rest[0], &admin_dir, spec("img:2"), Some(1)).expect("commit after failover");
    assert_eq!(v, 2, "the write acknowledged before the kill is kept");

    // The killed member comes back, follows the new leader and catches up.
    old.restart("controller");
    let (l, _) = agreed_leader(&all, &admin_dir, Duration::from_secs(20));
    assert_ne!(l, 0);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(old, &admin_dir).unwrap_or_default();
        let applied = st["last_applied"].as_u64().unwrap_or(0);
        let leader_applied = status(c.host(l as usize - 1), &admin_dir)
            .and_then(|s| s["last_applied"].as_u64())
            .unwrap_or(u64::MAX);
        if applied >= leader_applied {
            break;
        }
        assert!(
            Instant::now() < until,
            "the restarted member did not catch up: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
