//! Three real `berth-controller` processes on three hosts of the harness: they elect a
//! leader, a write sent to a follower commits, the leader killed with SIGKILL is replaced
//! within the default timeouts and no acknowledged write is lost, and the killed member comes
//! back and catches up. A fourth controller joins over the network with the controller token,
//! asks to be added and becomes a voter; after a rotation the old token is refused.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_controller::pki::{IssuedCert, client_config};
use berth_controller::transport::MtlsConnector;
use berth_proto::v1;
use berth_tests::cluster::{Cluster, Host};

const PORT: u16 = 7443;

/// The longest a `berth-controller` command may run (its own call limits are 10 and 30 s).
const LIMIT: Duration = Duration::from_secs(60);

/// `Command::output` with [`LIMIT`]: a stuck command fails the test instead of hanging it.
trait OutputWithin {
    fn output_within(&mut self, limit: Duration) -> std::process::Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> std::process::Output {
        berth_tests::output_within(self, limit)
    }
}

fn controller_bin() -> PathBuf {
    berth_tests::target_dir().join("berth-controller")
}

fn ok(cmd: &mut Command) -> String {
    let out = berth_tests::output_within(cmd, LIMIT);
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
            .output_within(LIMIT);
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
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
        {
            return (*l, Instant::now());
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

/// The admin credentials of `admin_dir`: the CA and the admin certificate.
fn admin(admin_dir: &Path) -> (String, IssuedCert) {
    let read = |p: &str| std::fs::read_to_string(admin_dir.join(p)).unwrap();
    (
        read("ca/ca.pem"),
        IssuedCert {
            cert_pem: read("admin/admin.pem"),
            key_pem: read("admin/admin.key"),
        },
    )
}

type Client = v1::control_client::ControlClient<tonic::transport::Channel>;

/// Runs `f` with a Control client to the member on `h` (from `h`), trusting `ca` and
/// presenting `cert`, with a 3 s limit.
fn with_client<T: Send>(
    h: &Host,
    ca: &str,
    cert: &IssuedCert,
    f: impl AsyncFnOnce(Client) -> Result<T, String> + Send,
) -> Result<T, String> {
    with_config(h, client_config(ca, cert).unwrap(), f)
}

/// Runs `f` with a Control client to the member on `h` (from `h`) dialling with `config`.
fn with_config<T: Send>(
    h: &Host,
    config: std::sync::Arc<rustls::ClientConfig>,
    f: impl AsyncFnOnce(Client) -> Result<T, String> + Send,
) -> Result<T, String> {
    let target = addr(h.ip);
    h.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let channel = MtlsConnector::new(config)
                .channel(&target)
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(Duration::from_secs(3), f(Client::new(channel)))
                .await
                .map_err(|_| "timed out".to_string())?
        })
    })
}

/// Applies `spec` through the member on `h` (from `h`), with the admin certificate.
fn apply(
    h: &Host,
    admin_dir: &Path,
    spec: v1::ServiceSpec,
    expected: Option<u64>,
) -> Result<u64, String> {
    let (ca, cert) = admin(admin_dir);
    with_client(h, &ca, &cert, async move |mut c| {
        let r = c
            .apply_service(v1::ApplyServiceRequest {
                spec: Some(spec),
                expected_version: expected,
            })
            .await
            .map_err(|s| s.to_string())?;
        Ok(r.into_inner().service.map(|s| s.version).unwrap_or(0))
    })
}

/// The version of service `web`, read linearizably through the member on `h`.
fn web_version(h: &Host, admin_dir: &Path) -> Result<u64, String> {
    let (ca, cert) = admin(admin_dir);
    with_client(h, &ca, &cert, async move |mut c| {
        let r = c
            .get_service(v1::GetServiceRequest {
                name: "web".into(),
                stale: false,
            })
            .await
            .map_err(|s| s.to_string())?;
        Ok(r.into_inner().service.map(|s| s.version).unwrap_or(0))
    })
}

/// Waits until the member on `h` has applied as much as the one on `of`.
fn caught_up(h: &Host, of: &Host, admin_dir: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(h, admin_dir).unwrap_or_default();
        let applied = st["last_applied"].as_u64().unwrap_or(0);
        let target = status(of, admin_dir)
            .and_then(|s| s["last_applied"].as_u64())
            .unwrap_or(u64::MAX);
        if applied >= target {
            return;
        }
        assert!(Instant::now() < until, "{} did not catch up: {st}", h.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A leader agreed by `hosts` other than `not`.
fn new_leader(hosts: &[&Host], admin_dir: &Path, not: u64) -> (u64, Instant) {
    loop {
        let (l, at) = agreed_leader(hosts, admin_dir, Duration::from_secs(20));
        if l != not {
            return (l, at);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
    let (_, bootstrap) = init_three(&c, &dirs);
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
    let (l1, elected_at) = new_leader(&rest, &admin_dir, leader);
    eprintln!(
        "failover: leader {leader} killed, {l1} agreed by the others after {:?}",
        elected_at.duration_since(killed_at)
    );
    let v = apply(rest[0], &admin_dir, spec("img:2"), Some(1)).expect("commit after failover");
    assert_eq!(v, 2, "the write acknowledged before the kill is kept");

    // The killed member comes back, follows the leader and catches up.
    old.restart("controller");
    let (l, _) = agreed_leader(&all, &admin_dir, Duration::from_secs(20));
    caught_up(old, c.host(l as usize - 1), &admin_dir);

    // A minority partition: the leader cut off alone cannot commit; the majority elects
    // another leader and commits; after healing the old leader catches up.
    let lone = c.host(l as usize - 1);
    c.partition(&[l as usize - 1]);
    let e = apply(lone, &admin_dir, spec("img:minority"), None).unwrap_err();
    eprintln!("write on the cut-off leader: {e}");
    let majority: Vec<&Host> = c.hosts.iter().filter(|h| h.ip != lone.ip).collect();
    let (l2, _) = new_leader(&majority, &admin_dir, l);
    let v = apply(majority[0], &admin_dir, spec("img:3"), None).expect("the majority commits");
    assert_eq!(
        v, 3,
        "the cut-off leader's write was not acknowledged and is not there"
    );
    c.heal();
    caught_up(lone, c.host(l2 as usize - 1), &admin_dir);
    assert_eq!(web_version(lone, &admin_dir).unwrap(), 3);

    // All three stopped and started again: the state is read back from disk.
    for h in &c.hosts {
        assert!(
            h.stop("controller", Duration::from_secs(10)),
            "{} did not stop on SIGTERM",
            h.name
        );
    }
    for h in &c.hosts {
        h.restart("controller");
    }
    agreed_leader(&all, &admin_dir, Duration::from_secs(20));
    for h in &c.hosts {
        assert_eq!(web_version(h, &admin_dir).unwrap(), 3, "{}", h.name);
    }

    // A certificate from another cluster's CA is refused.
    use berth_controller::pki::{ClusterCa, DEFAULT_LEAF_VALIDITY, Identity, Role};
    let other = ClusterCa::generate("other").unwrap();
    let stranger = other
        .issue(
            &Identity::new(Role::Admin, "admin").unwrap(),
            &[],
            DEFAULT_LEAF_VALIDITY,
        )
        .unwrap();
    let (ca, _) = admin(&admin_dir);
    let e = with_client(c.host(0), &ca, &stranger, async |mut cl| {
        cl.status(v1::Empty {})
            .await
            .map(|_| ())
            .map_err(|s| s.to_string())
    })
    .unwrap_err();
    eprintln!("another CA's certificate: {e}");
}

/// Initialises the cluster in `dirs[0]` (member 1 on the first host) and prepares members 2
/// and 3 on the next two hosts; returns `init`'s output and the `--bootstrap` value naming the
/// three.
fn init_three(c: &Cluster, dirs: &[PathBuf]) -> (String, String) {
    let out = ok(Command::new(controller_bin())
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
    (out, bootstrap)
}

/// The line `<label> <value>` of `init`'s output.
fn printed(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
}

#[test]
fn a_controller_joins_with_the_token_and_the_leader_is_removed_while_writes_go_on() {
    if !berth_tests::require_root(
        "a_controller_joins_with_the_token_and_the_leader_is_removed_while_writes_go_on",
    ) {
        return;
    }
    let c = Cluster::new(4);
    let dirs: Vec<PathBuf> = c.hosts.iter().map(|h| h.dir.join("ctl")).collect();
    let admin_dir = dirs[0].clone();
    let (out, bootstrap) = init_three(&c, &dirs);
    let token = printed(&out, "controller join token:");
    let agent_token = printed(&out, "agent join token:");
    for (i, dir) in dirs.iter().take(3).enumerate() {
        let mut args = vec!["run", "--data-dir", dir.to_str().unwrap()];
        if i == 0 {
            args.extend(["--bootstrap", &bootstrap]);
        }
        c.host(i).spawn("controller", controller_bin(), &args);
    }
    let first: Vec<&Host> = c.hosts[..3].iter().collect();
    agreed_leader(&first, &admin_dir, Duration::from_secs(20));

    // A writer applies services without pause through whichever member answers, while the
    // fourth member joins and the leader is then removed; every acknowledged write must be
    // there at the end.
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::<String>::new());
    let fourth = c.host(3);
    let new = std::thread::scope(|scope| {
        // Stops the writer however this closure ends: a failed assertion below must fail the
        // test, not leave the scope waiting for a writer that never stops.
        let _stop_writer = berth_tests::SetOnDrop(&stop);
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w{n}");
                for k in 0..c.hosts.len() {
                    let h = c.host((n + k) % c.hosts.len());
                    let spec = v1::ServiceSpec {
                        name: name.clone(),
                        ..spec("w:1")
                    };
                    if apply(h, &admin_dir, spec, None).is_ok() {
                        acked.lock().unwrap().push(name.clone());
                        break;
                    }
                }
                n += 1;
            }
        });

        // The fourth host joins through the second's join listener (the advertised port + 1),
        // over the network; the tokens are seeded by the first leader, so retry until then.
        let join_addr = format!("{}:{}", c.host(1).ip, PORT + 1);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out = fourth
                .ns
                .command(controller_bin())
                .args(["join", "--token", &token, "--join-addr", &join_addr])
                .arg("--data-dir")
                .arg(&dirs[3])
                .args(["--id", "4", "--advertise", &addr(fourth.ip)])
                .output_within(LIMIT);
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("no controller join token yet") && Instant::now() < until,
                "join failed: {err}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let dir = dirs[3].to_str().unwrap();
        fourth.spawn("controller", controller_bin(), &["run", "--data-dir", dir]);

        // It asks to be added, catches up and becomes a voter.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let st = status(c.host(0), &admin_dir).unwrap_or_default();
            let voters: Vec<u64> = st["voters"]
                .as_array()
                .map(|v| v.iter().filter_map(|m| m["id"].as_u64()).collect())
                .unwrap_or_default();
            if voters.contains(&4) {
                eprintln!("member 4 is a voter: {st}");
                break;
            }
            assert!(
                Instant::now() < until,
                "member 4 never became a voter: {st}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let all: Vec<&Host> = c.hosts.iter().collect();
        agreed_leader(&all, &admin_dir, Duration::from_secs(20));
        assert_eq!(status(fourth, &admin_dir).unwrap()["id"].as_u64(), Some(4));

        // The leader is removed from the membership while the writes go on; the other three
        // elect a new one among themselves.
        let (leader, _) = agreed_leader(&all, &admin_dir, Duration::from_secs(20));
        let (ca, cert) = admin(&admin_dir);
        let via = c.host(usize::try_from(leader % 4).unwrap());
        let removed = with_client(via, &ca, &cert, async move |mut client| {
            let r = client
                .remove_member(v1::RemoveMemberRequest { id: leader })
                .await
                .map_err(|s| s.to_string())?;
            Ok(r.into_inner())
        });
        eprintln!("removed the leader, member {leader}: {removed:?}");
        let rest: Vec<&Host> = c
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != leader)
            .map(|(_, h)| h)
            .collect();
        let until = Instant::now() + Duration::from_secs(20);
        let new = loop {
            let (l, _) = agreed_leader(&rest, &admin_dir, Duration::from_secs(20));
            let voters = status(rest[0], &admin_dir).unwrap_or_default()["voters"].clone();
            let ids: Vec<u64> = voters
                .as_array()
                .map(|v| v.iter().filter_map(|m| m["id"].as_u64()).collect())
                .unwrap_or_default();
            if l != leader && ids.len() == 3 && !ids.contains(&leader) {
                break l;
            }
            assert!(
                Instant::now() < until,
                "no new leader without {leader}: {voters}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let before = acked.lock().unwrap().len();
        let until = Instant::now() + Duration::from_secs(20);
        while acked.lock().unwrap().len() < before + 5 {
            assert!(
                Instant::now() < until,
                "no write committed after the removal"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!(
            "new leader {new}; {} writes acknowledged",
            acked.lock().unwrap().len()
        );
        new
    });

    // Every acknowledged write is in the state, read linearizably through a remaining member.
    let acked = acked.into_inner().unwrap();
    let via = c.host(usize::try_from(new - 1).unwrap());
    let (ca, cert) = admin(&admin_dir);
    let names = with_client(via, &ca, &cert, async move |mut client| {
        let r = client
            .list_services(v1::ListServicesRequest { stale: false })
            .await
            .map_err(|s| s.to_string())?;
        Ok(r.into_inner()
            .services
            .into_iter()
            .filter_map(|s| s.spec.map(|spec| spec.name))
            .collect::<std::collections::HashSet<_>>())
    })
    .unwrap();
    let lost: Vec<&String> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(acked.len() >= 10, "too few writes to tell: {}", acked.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // Over the wire: a forged controller token (the right CA, another secret) and the agent
    // token used to join as a controller are refused and leave nothing, and a client without
    // a certificate cannot even finish the handshake on a member's main port.
    let join_addr = format!("{}:{}", via.ip, PORT + 1);
    let forged = {
        let (head, secret) = token.rsplit_once('-').unwrap();
        format!("{head}-{}", secret.chars().rev().collect::<String>())
    };
    for (bad, words) in [
        (forged.as_str(), "secret is not valid"),
        (agent_token.as_str(), "agent"),
    ] {
        let out = fourth
            .ns
            .command(controller_bin())
            .args(["join", "--token", bad, "--join-addr", &join_addr])
            .arg("--data-dir")
            .arg(fourth.dir.join("ctl-refused"))
            .args([
                "--id",
                "9",
                "--advertise",
                &format!("{}:{}", fourth.ip, PORT + 20),
            ])
            .output_within(LIMIT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(words), "{bad}: {err}");
        assert!(!fourth.dir.join("ctl-refused/cluster.json").exists());
        eprintln!("refused join: {err}");
    }
    let parsed = berth_controller::pki::JoinToken::parse(&token).unwrap();
    let no_cert = berth_controller::pki::join_client_config(&parsed).unwrap();
    let e = with_config(via, no_cert, async |mut cl| {
        cl.status(v1::Empty {})
            .await
            .map(|_| ())
            .map_err(|s| s.to_string())
    })
    .unwrap_err();
    // Refused by the transport (the handshake: a CertificateRequired alert, or the
    // connection closed under it), never answered by a service.
    assert!(e.contains("tonic::transport::Error"), "{e}");
    eprintln!("a client without a certificate: {e}");

    // The controller token rotated: another join with the old one is refused.
    let join_addr = format!("{}:{}", via.ip, PORT + 1);
    let out = via
        .ns
        .command(controller_bin())
        .args(["token", "rotate", "controller", "--data-dir"])
        .arg(&admin_dir)
        .args(["--addr", &addr(via.ip)])
        .output_within(LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BERTH-1-"));
    let out = fourth
        .ns
        .command(controller_bin())
        .args(["join", "--token", &token, "--join-addr", &join_addr])
        .arg("--data-dir")
        .arg(fourth.dir.join("ctl-again"))
        .args([
            "--id",
            "5",
            "--advertise",
            &format!("{}:{}", fourth.ip, PORT + 10),
        ])
        .output_within(LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("secret is not valid"),
        "{err}"
    );
    eprintln!("the rotated-away token: {err}");
}
