//! End-to-end node networking: hosts as network namespaces on a LAN bridge, each agent in its
//! own; published ports reached from another host, from the node's localhost and from a
//! container through the port (hairpin); links; UDP; taken ports; what stop and a crashed
//! agent leave (nothing).

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_tests::TestAgent;
use berth_tests::lan::Lan;
use common::{agent, iptables_rules, links_in, show};

const WEB: &str =
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www";

/// `GET /` from `a`'s network namespace (its host side); the body, or why it failed.
fn http_get(a: &TestAgent, addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    a.netns.run(move || {
        let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        match resp.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
                Ok(body.trim().to_string())
            }
            _ => Err(format!("bad response from {addr}: {resp:?}")),
        }
    })
}

/// An agent on LAN host `i` with the busybox image `bb`; `None` after a loud SKIPPED.
fn lan_agent(test: &str, lan: &Lan, i: usize) -> Option<TestAgent> {
    if !berth_tests::require_root_and_busybox(test) {
        return None;
    }
    let a = agent().in_netns(lan.hosts[i].0.clone());
    a.busybox_image("bb");
    Some(a)
}

fn network_json(a: &TestAgent) -> serde_json::Value {
    serde_json::from_str(&a.ok(["network", "inspect"])).expect("network inspect json")
}

fn container_ip(a: &TestAgent, c: &str) -> String {
    a.inspect(c)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{c} has no address: {}", a.inspect(c)))
        .to_string()
}

/// Waits until `GET /` at `addr` answers from `a`'s namespace (httpd was just started);
/// returns the body.
fn wait_http(a: &TestAgent, addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(a, addr) {
            Ok(body) => return body,
            Err(e) => assert!(Instant::now() < deadline, "{addr} never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn published_port_answers_the_lan_localhost_and_hairpin_and_links_work() {
    if !berth_tests::require_root_and_busybox(
        "published_port_answers_the_lan_localhost_and_hairpin_and_links_work",
    ) {
        return;
    }
    let lan = Lan::new(2);
    let Some(a) = lan_agent("published_port", &lan, 0) else {
        return;
    };
    let b = agent().in_netns(lan.hosts[1].0.clone());
    let host_a = lan.hosts[0].1;
    // The node's bridge and base rules, then the baseline every stop must come back to.
    a.ok(["run", "--rm", "bb", "true"]);
    let rules_before = iptables_rules(&a.netns);
    let links_before = links_in(&a.netns);

    let web = a
        .ok([
            "run",
            "-d",
            "--name",
            "web",
            "--hostname",
            "web",
            "-p",
            "8080:80",
            "bb",
            "sh",
            "-c",
            WEB,
        ])
        .trim()
        .to_string();
    let web_ip = container_ip(&a, "web");
    assert!(web_ip.starts_with("10.77."), "{web_ip}");
    let ps = a.ok(["ps"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");

    // From another host on the LAN.
    let url = format!("http://{host_a}:8080/");
    assert_eq!(wait_http(&b, &format!("{host_a}:8080")), "hello-from-web");
    // From the node's own localhost.
    assert_eq!(http_get(&a, "127.0.0.1:8080").unwrap(), "hello-from-web");
    // From a container on the same bridge, through the published port (hairpin).
    let out = a.ok(["run", "--rm", "bb", "wget", "-q", "-O-", &url]);
    assert_eq!(out.trim(), "hello-from-web");
    // Outbound: a container on A reaches a port published on B (B has no route to A's
    // containers, so this works only through A's MASQUERADE).
    b.busybox_image("bb");
    b.ok([
        "run",
        "-d",
        "--name",
        "far",
        "--hostname",
        "far",
        "-p",
        "8081:80",
        "bb",
        "sh",
        "-c",
        WEB,
    ]);
    let host_b = lan.hosts[1].1;
    assert_eq!(wait_http(&b, &format!("{host_b}:8081")), "hello-from-far");
    let out = a.ok([
        "run",
        "--rm",
        "bb",
        "wget",
        "-q",
        "-O-",
        &format!("http://{host_b}:8081/"),
    ]);
    assert_eq!(out.trim(), "hello-from-far");
    b.ok(["rm", "-f", "far"]);
    // The container itself, through its own published port.
    let out = a.ok(["exec", "web", "wget", "-q", "-O-", &url]);
    assert_eq!(out.trim(), "hello-from-web");

    // A linked container sees Docker's variables and resolves the alias.
    let out = a.ok([
        "run",
        "--rm",
        "--name",
        "client",
        "--link",
        "web:site",
        "bb",
        "sh",
        "-c",
        "env | grep ^SITE_ | sort; grep site /etc/hosts; wget -q -O- http://site/",
    ]);
    for want in [
        "SITE_NAME=/client/site".to_string(),
        format!("SITE_PORT=tcp://{web_ip}:80"),
        format!("SITE_PORT_80_TCP=tcp://{web_ip}:80"),
        format!("SITE_PORT_80_TCP_ADDR={web_ip}"),
        "SITE_PORT_80_TCP_PORT=80".to_string(),
        "SITE_PORT_80_TCP_PROTO=tcp".to_string(),
        format!("{web_ip}\tsite web web"),
        "hello-from-web".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}"
        );
    }

    // After stop: the rules, the links and the address are as before.
    a.ok(["stop", "-t", "1", "web"]);
    assert_eq!(iptables_rules(&a.netns), rules_before);
    assert_eq!(links_in(&a.netns), links_before);
    let net = network_json(&a);
    assert_eq!(net["Addresses"], serde_json::json!({}), "{net}");
    assert_eq!(net["Published"], serde_json::json!({}), "{net}");
    assert!(a.inspect(&web)["NetworkSettings"].is_null());
    // Started again, it is reachable again.
    a.ok(["start", "web"]);
    assert_eq!(wait_http(&b, &format!("{host_a}:8080")), "hello-from-web");
    a.ok(["rm", "-f", "web"]);
    assert_eq!(iptables_rules(&a.netns), rules_before);
    assert_eq!(links_in(&a.netns), links_before);
}

#[test]
fn udp_random_and_taken_ports() {
    if !berth_tests::require_root_and_busybox("udp_random_and_taken_ports") {
        return;
    }
    let echo = berth_tests::target_dir().join("udp-echo");
    if !echo.exists() {
        eprintln!(
            "\n*** SKIPPED: udp_random_and_taken_ports: build the udp-echo helper first (cargo build --bins) ***\n"
        );
        return;
    }
    let lan = Lan::new(2);
    let Some(a) = lan_agent("udp_random_and_taken_ports", &lan, 0) else {
        return;
    };
    let host_a = lan.hosts[0].1;

    // UDP: the host's libraries and the echo server are mounted into the busybox image.
    let echo_mount = format!("{}:/udp-echo:ro", echo.display());
    a.ok([
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        "5353:7/udp",
        "-v",
        "/usr/lib:/lib:ro",
        "-v",
        "/usr/lib64:/lib64:ro",
        "-v",
        &echo_mount,
        "bb",
        "/udp-echo",
        "7",
    ]);
    let reply = lan.hosts[1].0.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..50 {
            s.send_to(b"ping", (host_a, 5353)).unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
        }
        String::new()
    });
    assert_eq!(reply, "echo: ping", "logs: {}", a.ok(["logs", "udp"]));

    // A random host port from the ephemeral range, reachable.
    a.ok([
        "run", "-d", "--name", "rnd", "-p", "80", "bb", "sh", "-c", WEB,
    ]);
    let port = a.inspect("rnd")["NetworkSettings"]["Ports"][0]["HostPort"]
        .as_u64()
        .unwrap();
    assert!((32768..=60999).contains(&port), "{port}");
    wait_http(&a, &format!("{host_a}:{port}"));

    // Taken by another container: refused, nothing left.
    a.ok([
        "run", "-d", "--name", "web", "-p", "8080:80", "bb", "sh", "-c", WEB,
    ]);
    let before = network_json(&a);
    let o = a.run([
        "run", "-d", "--name", "web2", "-p", "8080:80", "bb", "sh", "-c", WEB,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("8080") && err.contains("already published by berth"),
        "{}",
        show(&o)
    );
    assert_eq!(network_json(&a), before);
    assert!(a.run(["inspect", "web2"]).status.code() != Some(0));
    // Taken by a process on the host: refused, naming the port.
    let listener = a.netns.run(|| TcpListener::bind("0.0.0.0:9090").unwrap());
    let o = a.run(["run", "-d", "-p", "9090:80", "bb", "sh", "-c", WEB]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("9090")
            && err.contains("in use by a process on the host"),
        "{}",
        show(&o)
    );
    drop(listener);
    assert_eq!(network_json(&a), before);
    // Bad specs name what is wrong.
    let o = a.run(["run", "-d", "-p", "70000:80", "bb", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("70000"),
        "{}",
        show(&o)
    );
    let o = a.run([
        "run",
        "-d",
        "--network",
        "host",
        "-p",
        "80:80",
        "bb",
        "true",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bridge network"),
        "{}",
        show(&o)
    );
    let o = a.run(["run", "-d", "--link", "nosuch:x", "bb", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nosuch"),
        "{}",
        show(&o)
    );
    for c in ["udp", "rnd", "web"] {
        a.ok(["rm", "-f", c]);
    }
    let net = network_json(&a);
    assert_eq!(net["Addresses"], serde_json::json!({}), "{net}");
}

#[test]
fn linked_hosts_follow_a_new_address_and_restarts_keep_theirs() {
    let Some(a) =
        common::agent_with_busybox("linked_hosts_follow_a_new_address_and_restarts_keep_theirs")
    else {
        return;
    };
    a.ok(["run", "-d", "--name", "db", "bb", "sleep", "600"]);
    let db_ip = container_ip(&a, "db");
    a.ok([
        "run", "-d", "--name", "app", "--link", "db", "bb", "sleep", "600",
    ]);
    let hosts = a.ok(["exec", "app", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{db_ip}\tdb ")), "{hosts}");
    // db comes back with another address: app's /etc/hosts follows.
    a.ok(["stop", "-t", "1", "db"]);
    a.ok(["start", "db"]);
    let new_ip = container_ip(&a, "db");
    assert_ne!(new_ip, db_ip);
    let hosts = a.ok(["exec", "app", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{new_ip}\tdb ")), "{hosts}");
    assert!(!hosts.contains(&db_ip), "{hosts}");
    let ping = a.ok(["exec", "app", "ping", "-c", "1", "-W", "2", "db"]);
    assert!(ping.contains(&new_ip), "{ping}");

    // A restart by the policy keeps the namespace, so the address and the veth.
    a.ok([
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "bb",
        "sh",
        "-c",
        "sleep 0.3; exit 3",
    ]);
    let ip = container_ip(&a, "flaky");
    a.wait_for("two restarts", Duration::from_secs(20), || {
        a.inspect("flaky")["State"]["RestartCount"].as_u64() == Some(2)
    });
    a.wait_for("flaky to give up", Duration::from_secs(20), || {
        a.inspect("flaky")["State"]["Status"] == "exited"
    });
    // Released once it gave up.
    assert!(a.inspect("flaky")["NetworkSettings"].is_null());
    let net = network_json(&a);
    assert!(
        !net["Addresses"].to_string().contains(&format!("\"{ip}\"")),
        "{net}"
    );
}

#[test]
fn none_and_host_networks() {
    let Some(a) = common::agent_with_busybox("none_and_host_networks") else {
        return;
    };
    let out = a.ok([
        "run",
        "--rm",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "ip -o link; cat /etc/hosts",
    ]);
    assert!(out.contains("lo:") && !out.contains("eth0"), "{out}");
    assert!(out.contains("127.0.0.1\tlocalhost"), "{out}");
    // Host networking sees the agent's namespace (its loopback, no bridge yet).
    let out = a.ok(["run", "--rm", "--network", "host", "bb", "ip", "-o", "link"]);
    assert_eq!(
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .collect::<Vec<_>>(),
        links_in(&a.netns)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    let o = a.run(["run", "--rm", "--network", "overlay1", "bb", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("overlay1"),
        "{}",
        show(&o)
    );
}

/// The state the invariant below checks, all owners by container id.
struct NetState {
    active: BTreeSet<String>,
    addresses: BTreeSet<String>,
    published: BTreeSet<String>,
    veths: BTreeSet<String>,
    rule_owners: BTreeSet<String>,
}

fn net_state(a: &TestAgent) -> NetState {
    let ps: serde_json::Value = serde_json::from_str(&a.ok(["ps", "-o", "json"])).unwrap();
    let active = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    let net = network_json(a);
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect();
    let rules = iptables_rules(&a.netns);
    NetState {
        active,
        addresses: keys(&net["Addresses"]),
        published: keys(&net["Published"]),
        veths: links_in(&a.netns)
            .into_iter()
            .filter(|l| l.starts_with("bth"))
            .collect(),
        rule_owners: rules
            .lines()
            .filter_map(|l| l.split("--comment \"berth:").nth(1))
            .filter_map(|r| r.split('"').next())
            .filter(|o| !o.starts_with('/'))
            .map(str::to_string)
            .collect(),
    }
}

#[test]
fn agent_killed_during_network_setup_leaves_nothing_once_restarted() {
    let Some(a) = common::agent_with_busybox(
        "agent_killed_during_network_setup_leaves_nothing_once_restarted",
    ) else {
        return;
    };
    a.ok(["run", "--rm", "bb", "true"]);
    let rules_before = iptables_rules(&a.netns);
    let links_before = links_in(&a.netns);
    // Killed at increasing points of `run`: before, during and after the network set-up.
    for (i, delay_ms) in [0u64, 1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 70]
        .into_iter()
        .enumerate()
    {
        let port = (20000 + i).to_string();
        let mut child = a
            .cmd([
                "run",
                "-d",
                "--name",
                &format!("k{i}"),
                "-p",
                &format!("{port}:80"),
                "bb",
                "sleep",
                "600",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // The agent comes back: `serve` reconciles the network when it starts.
    let mut serve = a
        .cmd(["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let consistent = |s: &NetState| {
        let veths: BTreeSet<String> = s
            .active
            .iter()
            .map(|id| format!("bth{}", &id[..8]))
            .collect();
        s.addresses.is_subset(&s.active)
            && s.published.is_subset(&s.active)
            && s.rule_owners.is_subset(&s.active)
            && s.veths == veths
            && s.active.iter().all(|id| s.addresses.contains(id))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = net_state(&a);
        if consistent(&s) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after the restart: active {:?}\naddresses {:?}\npublished {:?}\nveths {:?}\nrule owners {:?}",
            s.active,
            s.addresses,
            s.published,
            s.veths,
            s.rule_owners
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    // Whatever got to run is removed like any container; then nothing is left at all.
    let all: serde_json::Value = serde_json::from_str(&a.ok(["ps", "-a", "-o", "json"])).unwrap();
    for c in all.as_array().unwrap() {
        a.ok(["rm", "-f", c["Id"].as_str().unwrap()]);
    }
    assert_eq!(iptables_rules(&a.netns), rules_before);
    assert_eq!(links_in(&a.netns), links_before);
    let net = network_json(&a);
    assert_eq!(net["Addresses"], serde_json::json!({}), "{net}");
    assert_eq!(net["Published"], serde_json::json!({}), "{net}");
}

#[test]
fn a_hundred_containers_each_publishing_a_port_started_at_once() {
    let Some(a) =
        common::agent_with_busybox("a_hundred_containers_each_publishing_a_port_started_at_once")
    else {
        return;
    };
    a.ok(["run", "--rm", "bb", "true"]);
    let children: Vec<_> = (0..100)
        .map(|i| {
            a.cmd([
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "-p",
                "80",
                "bb",
                "sh",
                "-c",
                WEB,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", show(&o));
    }
    let ps: serde_json::Value = serde_json::from_str(&a.ok(["ps", "-o", "json"])).unwrap();
    let list = ps.as_array().unwrap();
    assert_eq!(list.len(), 100);
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for c in list {
        ips.insert(
            c["NetworkSettings"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        ports.insert(
            c["NetworkSettings"]["Ports"][0]["HostPort"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(
        (ips.len(), ports.len()),
        (100, 100),
        "no address or port handed out twice"
    );
    for p in &ports {
        wait_http(&a, &format!("127.0.0.1:{p}"));
    }
}

#[test]
fn teardown_is_refused_while_a_container_runs_then_removes_rules_bridge_and_cgroup_parent() {
    let test =
        "teardown_is_refused_while_a_container_runs_then_removes_rules_bridge_and_cgroup_parent";
    let Some(a) = common::agent_with_busybox(test) else {
        return;
    };
    // The rules and chain declarations (a table iptables loaded is listed even when empty).
    let rules = || -> Vec<String> {
        iptables_rules(&a.netns)
            .lines()
            .filter(|l| l.starts_with("-A") || (l.starts_with(':') && l.ends_with(" -")))
            .map(str::to_owned)
            .collect()
    };
    let rules_before = rules();
    let links_before = links_in(&a.netns);
    a.ok([
        "run", "-d", "--name", "web", "-p", "8080:80", "bb", "sh", "-c", WEB,
    ]);
    assert!(links_in(&a.netns).contains(&"berth0".to_string()));
    assert!(iptables_rules(&a.netns).contains("BERTH-DNAT"));

    let o = a.run(["teardown"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("1 running container") && err.contains("berth0"),
        "{}",
        show(&o)
    );
    assert!(
        iptables_rules(&a.netns).contains("BERTH-DNAT"),
        "nothing removed"
    );

    a.ok(["stop", "-t", "1", "web"]);
    a.ok(["teardown"]);
    assert_eq!(rules(), rules_before);
    assert_eq!(links_in(&a.netns), links_before);
    assert_eq!(a.cgroup_leftovers(), Vec::<std::path::PathBuf>::new());
    // Idempotent, and the stopped container is kept: it starts again with a new network.
    a.ok(["teardown"]);
    a.ok(["start", "web"]);
    let ip = container_ip(&a, "web");
    let body = wait_http(&a, &format!("{ip}:80"));
    assert!(body.starts_with("hello-from-"), "{body}");
    a.ok(["rm", "-f", "web"]);
    a.ok(["teardown"]);
    assert_eq!(rules(), rules_before);
    assert!(!iptables_rules(&a.netns).contains("BERTH"));
}
