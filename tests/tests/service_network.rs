//! Cross-host networking end to end (issue 7): a controller and four real `berth-agent node`
//! daemons on hosts spread over two L3 segments joined by a router namespace, running
//! busybox containers.
//!
//! * `web` (pinned to h1, segment A) links to `redis:db`; redis (a busybox httpd on port
//!   6379 answering its hostname) starts on h2 (segment B). `web` answers through the link.
//! * redis scaled to 3, one per node: new connections through the VIP reach all three.
//! * a redis task killed is out of every node's rules within a second, and no new
//!   connection reaches it.
//! * web's ingress port answers on a node that runs no web task, and a node's own task sees
//!   the client's real address.
//! * `redis` and `tasks.redis` resolve inside web's container.
//! * removing the services leaves no rule or name on any node; a removed node leaves no
//!   overlay route on the others.
//! * the same link test passes with the routed overlay, hosts on one segment.
//!
//! Every agent has a test-only state directory and cgroup parent and runs in a mount
//! namespace of its host; everything (namespaces, containers, cgroups) goes at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_proto::v1;
use berth_tests::cluster::{Cluster, Host};
use berth_tests::control_plane::ControlPlane;

use berth_tests::env::WAIT;

/// The shared harness ([`berth_tests::env::Env`]) with this test's views of it.
struct Env(berth_tests::env::Env);

impl std::ops::Deref for Env {
    type Target = berth_tests::env::Env;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Env {
    /// A controller on host 0 and agents on every host, with `init_args` for the cluster.
    fn new(sizes: &[usize], init_args: &[&str]) -> Env {
        let cluster = Cluster::segmented(sizes);
        let cp = ControlPlane::start(
            &cluster,
            1,
            init_args,
            &[
                "--agent-heartbeat-ms",
                "250",
                "--agent-missed-heartbeats",
                "4",
            ],
        )
        .expect("a controller");
        let mut env = berth_tests::env::Env::new(cluster, cp);
        let n: usize = sizes.iter().sum();
        for i in 0..n {
            env.start_agent(i, &["--stop-timeout-s", "1"]);
        }
        let env = Env(env);
        env.wait_for("every node ready", || env.ready() == n);
        env
    }

    fn ready(&self) -> usize {
        self.nodes()
            .iter()
            .filter(|n| n.status == v1::NodeStatus::Ready as i32)
            .count()
    }

    /// The service's running tasks: address → host index.
    fn running(&self, service: &str) -> BTreeMap<String, usize> {
        let hosts: BTreeMap<String, usize> = self
            .nodes()
            .into_iter()
            .filter_map(|n| Some((n.id, n.hostname.strip_prefix('h')?.parse().ok()?)))
            .collect();
        self.tasks(service)
            .into_iter()
            .filter(|t| {
                t.desired == v1::TaskDesiredState::Running as i32
                    && t.observed == v1::TaskState::Running as i32
                    && !t.address.is_empty()
            })
            .filter_map(|t| Some((t.address, *hosts.get(&t.node)?)))
            .collect()
    }

    /// The name of a running container of `service` on host `i`.
    fn container_on(&self, i: usize, service: &str) -> String {
        let listed: serde_json::Value =
            serde_json::from_str(&self.agents[&i].ok(["ps", "-o", "json"])).expect("ps json");
        listed
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|c| c["Name"].as_str())
            .find(|n| n.starts_with(&format!("{service}.")))
            .unwrap_or_else(|| panic!("no container of {service} on h{i}"))
            .to_owned()
    }

    /// `iptables-save` of host `i`'s nat and filter tables.
    fn rules(&self, i: usize) -> String {
        let out = self
            .cluster
            .host(i)
            .ns
            .command("iptables-save")
            .output()
            .expect("iptables-save");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn routes(&self, i: usize) -> String {
        let out = self
            .cluster
            .host(i)
            .ns
            .command("ip")
            .args(["route", "show"])
            .output()
            .expect("ip route");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// An HTTP GET from `host`'s network; the body.
fn get(host: &Host, addr: SocketAddr, path: &str) -> Result<String, String> {
    host.run(|| berth_tests::http::get(addr, path))
}

/// A stand-in for redis: busybox httpd on 6379 answering the container's hostname.
fn redis(replicas: u32, pinned: Option<&str>) -> v1::ServiceSpec {
    v1::ServiceSpec {
        name: "redis".into(),
        image: "busybox:1".into(),
        replicas,
        max_replicas_per_node: 1,
        constraints: pinned
            .map(|h| vec![format!("node.hostname=={h}")])
            .unwrap_or_default(),
        command: [
            "sh",
            "-c",
            "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 6379 -h /www",
        ]
        .map(String::from)
        .to_vec(),
        ports: vec![v1::ServicePort {
            target: 6379,
            protocol: v1::Protocol::Tcp as i32,
            mode: v1::PortMode::Host as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `web` on `host`: a CGI `/cgi-bin/r` fetching `http://db:6379/` (redis through the link,
/// at the address `/etc/hosts` gives `db`, with `nc`: Debian's static busybox `wget`
/// crashes) and `/cgi-bin/peer` answering the client's address; published on ingress port
/// 8080.
fn web(host: &str) -> v1::ServiceSpec {
    let script = r#"mkdir -p /www/cgi-bin
cat > /www/cgi-bin/r <<'EOF'
#!/bin/sh
echo Content-Type: text/plain
echo
printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $(grep -w db /etc/hosts | cut -f1) 6379 | tail -n 1
EOF
cat > /www/cgi-bin/peer <<'EOF'
#!/bin/sh
echo Content-Type: text/plain
echo
echo $REMOTE_ADDR
EOF
chmod +x /www/cgi-bin/r /www/cgi-bin/peer
exec httpd -f -p 80 -h /www"#;
    v1::ServiceSpec {
        name: "web".into(),
        image: "busybox:1".into(),
        replicas: 1,
        constraints: vec![format!("node.hostname=={host}")],
        command: ["sh", "-c", script].map(String::from).to_vec(),
        links: vec![v1::ServiceLink {
            service: "redis".into(),
            alias: "db".into(),
        }],
        ports: vec![v1::ServicePort {
            target: 80,
            published: 8080,
            protocol: v1::Protocol::Tcp as i32,
            mode: v1::PortMode::Ingress as i32,
        }],
        ..Default::default()
    }
}

fn ip(h: &Host) -> std::net::IpAddr {
    std::net::IpAddr::V4(h.ip)
}

#[test]
fn services_reach_each_other_across_segments_through_vips_names_and_the_mesh() {
    if !berth_tests::require_root_and_busybox("service_network") {
        return;
    }
    // h0, h1 on segment A (192.168.100.0/24); h2, h3 on segment B (192.168.101.0/24).
    let env = Env::new(&[2, 2], &[]);
    let redis_svc = env.apply(redis(1, Some("h2")));
    assert!(!redis_svc.vip.is_empty(), "redis has a VIP");
    env.wait_for("redis running on h2", || {
        env.running("redis").values().any(|h| *h == 2)
    });
    let web_svc = env.apply(web("h1"));
    assert_eq!(web_svc.ingress[0].published, 8080);
    env.wait_for("web running on h1", || env.running("web").len() == 1);

    // The link, across the router: web on h1 reaches redis on h2 as `db`.
    let h1 = env.cluster.host(1);
    if std::env::var_os("BERTH_DEBUG").is_some() {
        let c = env.container_on(1, "web");
        eprintln!(
            "{}",
            env.agents[&1].ok([
                "exec",
                &c,
                "sh",
                "-c",
                "cat /etc/hosts /etc/resolv.conf; /www/cgi-bin/r"
            ])
        );
    }
    let mut last = Ok(String::new());
    let through_link = env.wait_for("web answers through the link", || {
        last = get(
            env.cluster.host(0),
            SocketAddr::new(ip(h1), 8080),
            "/cgi-bin/r",
        );
        if std::env::var_os("BERTH_DEBUG").is_some() {
            eprintln!("{last:?}\n{}", env.rules(1));
        }
        last.as_ref().is_ok_and(|b| !b.is_empty())
    });
    assert!(through_link < WAIT);

    // The ingress port answers on h3 (segment B), which runs no web task; the client (h0)
    // is masqueraded there, but seen as itself when h1 serves it.
    let h3 = env.cluster.host(3);
    let via_h3 = get(
        env.cluster.host(0),
        SocketAddr::new(ip(h3), 8080),
        "/cgi-bin/r",
    )
    .expect("the mesh answers on a node without a task");
    assert!(!via_h3.is_empty(), "the mesh answered without redis");
    let peer = get(
        env.cluster.host(0),
        SocketAddr::new(ip(h1), 8080),
        "/cgi-bin/peer",
    )
    .expect("peer address");
    // httpd shows it IPv4-mapped: [::ffff:192.168.100.2].
    assert!(
        peer.trim_matches(['[', ']']).trim_start_matches("::ffff:")
            == env.cluster.host(0).ip.to_string(),
        "source preserved on the task's node: {peer}"
    );

    // Scale redis to 3, one per node: connections through the VIP reach all three.
    env.apply(redis(3, None));
    env.wait_for("3 redis tasks running", || env.running("redis").len() == 3);
    let backends = env.running("redis");
    let mut seen = BTreeSet::new();
    env.wait_for("every redis task answers through the VIP", || {
        if let Ok(b) = get(
            env.cluster.host(0),
            SocketAddr::new(ip(h1), 8080),
            "/cgi-bin/r",
        ) && !b.is_empty()
        {
            seen.insert(b);
        }
        seen.len() == 3
    });
    let hosts: BTreeSet<usize> = backends.values().copied().collect();
    assert_eq!(hosts.len(), 3, "one redis per node: {backends:?}");

    // DNS inside web's container.
    let web_agent = &env.agents[&1];
    let web_ctr = env.container_on(1, "web");
    let looked = web_agent.ok(["exec", &web_ctr, "nslookup", "redis"]);
    assert!(
        looked.contains(&redis_svc.vip),
        "redis → {}: {looked}",
        redis_svc.vip
    );
    let tasks = web_agent.ok(["exec", &web_ctr, "nslookup", "tasks.redis"]);
    for addr in backends.keys() {
        assert!(
            tasks.contains(addr.as_str()),
            "tasks.redis has {addr}: {tasks}"
        );
    }
    let hosts_file = web_agent.ok(["exec", &web_ctr, "cat", "/etc/hosts"]);
    assert!(
        hosts_file.contains(&format!("{}\tdb redis", redis_svc.vip)),
        "{hosts_file}"
    );
    let env_vars = web_agent.ok(["exec", &web_ctr, "env"]);
    assert!(
        env_vars.contains(&format!("DB_PORT=tcp://{}:6379", redis_svc.vip)),
        "{env_vars}"
    );

    // A redis task killed: out of every node's rules within a second.
    let (victim, victim_host) = backends
        .iter()
        .find(|(_, h)| **h != 1)
        .map(|(a, h)| (a.clone(), *h))
        .expect("a redis task off h1");
    let ctr = env.container_on(victim_host, "redis");
    for i in 0..4 {
        assert!(env.rules(i).contains(&victim), "h{i} balances to {victim}");
    }
    env.agents[&victim_host].ok(["kill", &ctr]);
    let killed = Instant::now();
    let mut gone_at = BTreeMap::new();
    while gone_at.len() < 4 {
        for i in 0..4 {
            if !gone_at.contains_key(&i) && !env.rules(i).contains(&victim) {
                gone_at.insert(i, killed.elapsed());
            }
        }
        assert!(
            killed.elapsed() < WAIT,
            "the killed task stays in the rules"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let slowest = gone_at.values().max().copied().unwrap_or_default();
    eprintln!("killed task out of the rules: {gone_at:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "a killed task left every node's rules after {slowest:?}"
    );
    for _ in 0..20 {
        let b = get(
            env.cluster.host(0),
            SocketAddr::new(ip(h1), 8080),
            "/cgi-bin/r",
        )
        .expect("web answers after the kill");
        assert!(!b.is_empty(), "a request reached the killed task");
    }

    // Teardown: no service rule or name left anywhere.
    env.remove("web");
    env.remove("redis");
    env.wait_for("no service rules on any node", || {
        (0..4).all(|i| !env.rules(i).contains("berth:/svc/"))
    });
    for i in 0..4 {
        let rules = env.rules(i);
        assert!(
            !rules.contains(&redis_svc.vip),
            "h{i} still has the VIP: {rules}"
        );
        assert!(!rules.contains("dport 8080"), "h{i} still publishes 8080");
    }

    // A node removed leaves no overlay route on the others.
    let h3_node = env
        .nodes()
        .into_iter()
        .find(|n| n.hostname == "h3")
        .expect("h3's node");
    env.cluster.host(3).kill("agent");
    env.retry("remove h3's node", || {
        env.control(async |c| {
            c.remove_node(v1::RemoveNodeRequest {
                node: h3_node.id.clone(),
                force: true,
            })
            .await
            .map(|_| ())
        })
    });
    let subnet = h3_node.subnet.clone();
    env.wait_for("h3's subnet gone from the other nodes' routes", || {
        (0..3).all(|i| !env.routes(i).contains(&subnet))
    });
}

#[test]
fn the_routed_overlay_carries_links_between_hosts_of_one_segment() {
    if !berth_tests::require_root_and_busybox("service_network routed") {
        return;
    }
    let env = Env::new(&[3], &["--overlay", "routed"]);
    env.apply(redis(1, Some("h2")));
    env.apply(web("h1"));
    env.wait_for("web and redis running", || {
        env.running("web").len() == 1 && env.running("redis").len() == 1
    });
    let h1 = env.cluster.host(1);
    env.wait_for("web answers through the link (routed)", || {
        get(
            env.cluster.host(0),
            SocketAddr::new(ip(h1), 8080),
            "/cgi-bin/r",
        )
        .is_ok_and(|b| !b.is_empty())
    });
    let routes = env.routes(1);
    assert!(
        !routes.contains("berth.vx"),
        "no vxlan device in routed mode: {routes}"
    );
    assert!(
        routes.contains(&format!("via {}", env.cluster.host(2).ip)),
        "a plain route to h2's subnet via h2: {routes}"
    );
    env.remove("web");
    env.remove("redis");
}
