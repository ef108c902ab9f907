//! Root tests of the service mesh with real traffic, all inside throwaway network
//! namespaces, each held by a thread of its own (so it goes when the thread ends, even on
//! failure):
//!
//! ```text
//!   client 192.168.77.2 ── lan0 192.168.77.1 ┐
//!                                            node ── brm0 10.42.1.1/24 ── c1 10.42.1.2
//!   remote 10.42.2.2 ── 10.99.0.2 ── ovl0 10.99.0.1 ┘                 └── c2 10.42.1.3
//! ```
//!
//! The node runs berth's rules; `c1` and `c2` are its containers; `remote` stands in for
//! another node and its task `10.42.2.2` (the node routes `10.42.2.0/24` to it); the client
//! is on the node's LAN, outside the cluster range. Every task answers a TCP connection
//! with `<name> <port> <the peer address it saw>`. Traffic only goes to these addresses.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};

use super::mesh;
use super::mesh_tests::{canon, mesh_config};
use super::rules::{self, Batch, State, Table};
use super::tests::{berth_leftovers, host_tables, in_fresh_netns, p50, read_real};
use super::{
    Commands, Firewall, IngressPort, IptablesFirewall, NetworkRules, Proto, Runner,
    ServiceFirewall, ServiceRules,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const NODE_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 42, 1, 1);
const C1: Ipv4Addr = Ipv4Addr::new(10, 42, 1, 2);
const C2: Ipv4Addr = Ipv4Addr::new(10, 42, 1, 3);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 42, 2, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

type Job = Box<dyn FnOnce() + Send>;

/// A network namespace held by a thread of its own, which runs the jobs it is sent (and
/// the commands they start) inside it.
struct Netns {
    /// `/proc/<pid>/task/<tid>/ns/net`, for `ip link ... netns`.
    path: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Netns {
    fn new() -> Netns {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let tid = nix::unistd::gettid();
            let _ = ready_tx.send(Ok(format!(
                "/proc/{}/task/{tid}/ns/net",
                std::process::id()
            )));
            while let Ok(job) = rx.recv() {
                job();
            }
        });
        let path = ready
            .recv()
            .expect("namespace thread")
            .expect("unshare(CLONE_NEWNET)");
        Netns {
            path,
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs `f` in the namespace; a panic in it is raised again here.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.jobs
            .as_ref()
            .expect("jobs")
            .send(job)
            .expect("namespace thread gone");
        match rx.recv().expect("namespace thread gone") {
            Ok(v) => v,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs a shell command line in the namespace; panics with its output if it fails.
    fn sh(&self, line: &str) {
        let line = line.to_owned();
        self.run(move || {
            let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
            assert!(
                out.status.success(),
                "{line}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// TCP (and UDP) servers answering `<name> <port> <peer>`; stopped when dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    fn new() -> Servers {
        Servers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn tcp(&mut self, ns: &Netns, name: &'static str, port: u16) {
        let listener = ns.run(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = writeln!(conn, "{name} {port} {}", peer.ip());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("{name}: accept: {e}"),
                }
            }
        }));
    }

    fn udp(&mut self, ns: &Netns, name: &'static str, port: u16) {
        let socket = ns.run(move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let reply = format!("{name} {port} {}", peer.ip());
                    let _ = socket.send_to(reply.as_bytes(), peer);
                }
            }
        }));
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a server answered: its name, its port, the peer address it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    name: String,
    port: u16,
    peer: Ipv4Addr,
}

fn parse(reply: &str) -> Answer {
    let mut w = reply.split_whitespace();
    let (Some(name), Some(port), Some(peer)) = (w.next(), w.next(), w.next()) else {
        panic!("bad answer {reply:?}");
    };
    Answer {
        name: name.to_owned(),
        port: port.parse().unwrap(),
        peer: peer.parse().unwrap(),
    }
}

/// One TCP connection from `ns` to `to:port`.
fn ask(ns: &Netns, to: Ipv4Addr, port: u16) -> std::io::Result<Answer> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&SocketAddr::from((to, port)), TIMEOUT)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(parse(&out))
    })
}

fn must_ask(ns: &Netns, to: Ipv4Addr, port: u16) -> Answer {
    ask(ns, to, port).unwrap_or_else(|e| panic!("connect to {to}:{port}: {e}"))
}

/// One UDP datagram from `ns` to `to:port`, and its answer.
fn ask_udp(ns: &Netns, to: Ipv4Addr, port: u16) -> Answer {
    ns.run(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            s.send_to(b"?", (to, port)).unwrap();
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return parse(std::str::from_utf8(&buf[..n]).unwrap());
            }
        }
        panic!("no UDP answer from {to}:{port}");
    })
}

/// The names that answered `n` connections from `ns` to `to:port`, with the peer each saw.
fn spread(ns: &Netns, to: Ipv4Addr, port: u16, n: usize) -> Vec<Answer> {
    (0..n).map(|_| must_ask(ns, to, port)).collect()
}

fn names(answers: &[Answer]) -> std::collections::BTreeSet<String> {
    answers.iter().map(|a| a.name.clone()).collect()
}

/// Asserts that a connection is refused, and fast.
fn refused(ns: &Netns, to: Ipv4Addr, port: u16) {
    let t = Instant::now();
    let err = ask(ns, to, port).expect_err("connected to a service without endpoints");
    let took = t.elapsed();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "{to}:{port}: {err}"
    );
    assert!(
        took < Duration::from_secs(1),
        "{to}:{port}: refused after {took:?}"
    );
}

/// The namespaces and servers, dropped servers first.
struct Topology {
    servers: Servers,
    node: Netns,
    c1: Netns,
    c2: Netns,
    remote: Netns,
    client: Netns,
}

impl Topology {
    fn build(docker_like: bool) -> Topology {
        let t = Topology {
            servers: Servers::new(),
            node: Netns::new(),
            c1: Netns::new(),
            c2: Netns::new(),
            remote: Netns::new(),
            client: Netns::new(),
        };
        let n = &t.node;
        n.sh("ip link set lo up");
        n.sh("ip link add brm0 type bridge && ip addr add 10.42.1.1/24 dev brm0 && ip link set brm0 up");
        for (ns, host, addr) in [(&t.c1, "vc1", C1), (&t.c2, "vc2", C2)] {
            n.sh(&format!(
                "ip link add {host} type veth peer name eth0 netns {} && \
                 ip link set {host} master brm0 && ip link set {host} type bridge_slave hairpin on && \
                 ip link set {host} up",
                ns.path
            ));
            ns.sh(&format!(
                "ip link set lo up && ip addr add {addr}/24 dev eth0 && ip link set eth0 up && \
                 ip route add default via {GATEWAY}"
            ));
        }
        n.sh(&format!(
            "ip link add lan0 type veth peer name eth0 netns {} && \
             ip addr add {NODE_LAN}/24 dev lan0 && ip link set lan0 up",
            t.client.path
        ));
        t.client.sh(&format!(
            "ip link set lo up && ip addr add {CLIENT}/24 dev eth0 && ip link set eth0 up"
        ));
        n.sh(&format!(
            "ip link add ovl0 type veth peer name eth0 netns {} && \
             ip addr add 10.99.0.1/30 dev ovl0 && ip link set ovl0 up && \
             ip route add 10.42.2.0/24 via 10.99.0.2 && ip route add default via {CLIENT}",
            t.remote.path
        ));
        t.remote.sh(&format!(
            "ip link set lo up && ip addr add {REMOTE}/32 dev lo && \
             ip addr add 10.99.0.2/30 dev eth0 && ip link set eth0 up && \
             ip route add 10.42.0.0/16 via 10.99.0.1 src {REMOTE}"
        ));
        // What the agent sets: forwarding, localhost to the bridge and towards other nodes,
        // no ICMP redirects.
        n.sh("echo 1 > /proc/sys/net/ipv4/ip_forward && \
             echo 1 > /proc/sys/net/ipv4/conf/brm0/route_localnet && \
             echo 1 > /proc/sys/net/ipv4/conf/ovl0/route_localnet && \
             echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects && \
             echo 0 > /proc/sys/net/ipv4/conf/brm0/send_redirects");
        let bridge_nf = if docker_like { 1 } else { 0 };
        n.sh(&format!(
            "echo {bridge_nf} > /proc/sys/net/bridge/bridge-nf-call-iptables"
        ));
        if docker_like {
            // What Docker leaves: FORWARD policy DROP, its own chains jumped to.
            n.sh("iptables -P FORWARD DROP && iptables -N DOCKER-USER && \
                 iptables -A FORWARD -j DOCKER-USER && iptables -t nat -N DOCKER && \
                 iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER");
        }
        t
    }

    fn serve(&mut self) {
        for (ns, name) in [(&self.c1, "c1"), (&self.c2, "c2"), (&self.remote, "r")] {
            self.servers.tcp(ns, name, 80);
            self.servers.tcp(ns, name, 81);
            self.servers.udp(ns, name, 53);
        }
    }
}

fn web(endpoints: &[Ipv4Addr]) -> ServiceRules {
    ServiceRules {
        name: "web".to_owned(),
        vip: Some(VIP),
        endpoints: endpoints.to_vec(),
        ingress: vec![IngressPort {
            protocol: Proto::Tcp,
            published: 30080,
            target: 80,
        }],
    }
}

fn dns() -> ServiceRules {
    ServiceRules {
        name: "dns".to_owned(),
        vip: Some(DNS_VIP),
        endpoints: vec![C1],
        ingress: vec![IngressPort {
            protocol: Proto::Udp,
            published: 30053,
            target: 53,
        }],
    }
}

fn network() -> NetworkRules {
    NetworkRules {
        bridge: "brm0".to_owned(),
        subnet: "10.42.1.1/24".parse().unwrap(),
    }
}

fn answer(name: &str, port: u16, peer: Ipv4Addr) -> Answer {
    Answer {
        name: name.to_owned(),
        port,
        peer,
    }
}

/// Everything the mesh promises, checked with traffic.
fn scenario(docker_like: bool) {
    let mut t = Topology::build(docker_like);
    t.serve();
    let fw = Arc::new(IptablesFirewall::new());
    let on_node = |f: Box<dyn FnOnce(&IptablesFirewall) + Send>| {
        let fw = fw.clone();
        t.node.run(move || f(&fw));
    };
    on_node(Box::new(|fw| {
        fw.setup_network(&network()).unwrap();
        fw.setup_mesh(&mesh_config()).unwrap();
    }));
    let set_up = t.node.run(read_real);

    // Container to container across nodes: sources kept both ways (FORWARD accepts them
    // even with Docker's DROP policy; the network's MASQUERADE does not catch them).
    assert_eq!(must_ask(&t.c1, REMOTE, 80), answer("r", 80, C1));
    assert_eq!(must_ask(&t.remote, C1, 80), answer("c1", 80, REMOTE));

    // The VIP from a container: every endpoint, every port, the choice made per connection.
    let all = web(&[C1, C2, REMOTE]);
    let a = all.clone();
    on_node(Box::new(move |fw| fw.apply_service(None, &a).unwrap()));
    let answers = spread(&t.c1, VIP, 80, 60);
    assert_eq!(
        names(&answers),
        ["c1", "c2", "r"].map(str::to_owned).into(),
        "{answers:?}"
    );
    for a in &answers {
        let want = match a.name.as_str() {
            // Hairpin and another task on the bridge: masqueraded to the bridge address,
            // so the reply comes back through the node.
            "c1" | "c2" => GATEWAY,
            // Another node's task: the container's own address.
            _ => C1,
        };
        assert_eq!(a.peer, want, "{a:?}");
    }
    let other_port = spread(&t.c2, VIP, 81, 30);
    assert!(other_port.iter().all(|a| a.port == 81), "{other_port:?}");
    assert_eq!(names(&other_port).len(), 3, "{other_port:?}");
    // From the node itself, and from the node's localhost through the ingress port.
    assert_eq!(names(&spread(&t.node, VIP, 80, 30)).len(), 3);
    assert_eq!(names(&spread(&t.node, LOCALHOST, 30080, 30)).len(), 3);
    // From the LAN, through the ingress port.
    let lan = spread(&t.client, NODE_LAN, 30080, 60);
    assert_eq!(names(&lan).len(), 3, "{lan:?}");
    for a in &lan {
        let want = if a.name == "r" { GATEWAY } else { CLIENT };
        assert_eq!(a.peer, want, "{a:?}");
        assert_eq!(a.port, 80);
    }

    // Only a local task: the client's address is kept; the node's localhost is
    // masqueraded to the bridge address.
    let local = web(&[C1]);
    let (prev, next) = (all.clone(), local.clone());
    on_node(Box::new(move |fw| {
        fw.apply_service(Some(&prev), &next).unwrap()
    }));
    assert_eq!(
        must_ask(&t.client, NODE_LAN, 30080),
        answer("c1", 80, CLIENT)
    );
    assert_eq!(
        must_ask(&t.node, LOCALHOST, 30080),
        answer("c1", 80, GATEWAY)
    );
    // Only a remote task: the node's address on its subnet, from anywhere outside it.
    let remote = web(&[REMOTE]);
    let (prev, next) = (local.clone(), remote.clone());
    on_node(Box::new(move |fw| {
        fw.apply_service(Some(&prev), &next).unwrap()
    }));
    assert_eq!(
        must_ask(&t.client, NODE_LAN, 30080),
        answer("r", 80, GATEWAY)
    );
    assert_eq!(
        must_ask(&t.node, LOCALHOST, 30080),
        answer("r", 80, GATEWAY)
    );
    assert_eq!(must_ask(&t.node, NODE_LAN, 30080), answer("r", 80, GATEWAY));
    assert_eq!(must_ask(&t.node, VIP, 80), answer("r", 80, GATEWAY));
    assert_eq!(must_ask(&t.c2, VIP, 80), answer("r", 80, C2));
    // A container reaching the ingress port on the node's LAN address: its source is kept
    // too (the reply comes back through its node).
    assert_eq!(must_ask(&t.c2, NODE_LAN, 30080), answer("r", 80, C2));

    // An endpoint removed gets no new connection; the change is one small batch.
    let two = web(&[C1, REMOTE]);
    let (prev, next) = (remote.clone(), all.clone());
    on_node(Box::new(move |fw| {
        fw.apply_service(Some(&prev), &next).unwrap()
    }));
    let (prev, next) = (all.clone(), two.clone());
    let took = t.node.run({
        let fw = fw.clone();
        move || {
            let t = Instant::now();
            fw.apply_service(Some(&prev), &next).unwrap();
            t.elapsed()
        }
    });
    assert!(took < Duration::from_secs(1), "apply_service took {took:?}");
    eprintln!("apply_service (3 endpoints to 2) took {took:?}");
    let answers = spread(&t.c1, VIP, 80, 60);
    assert_eq!(
        names(&answers),
        ["c1", "r"].map(str::to_owned).into(),
        "{answers:?}"
    );
    let gone = mesh::sep_chain("web", C2);
    assert!(
        !t.node.run(read_real).chains(Table::Nat).contains(&gone),
        "the removed endpoint's chain is still there"
    );

    // No endpoints: refused at once, from a container, the node and the LAN.
    let (prev, next) = (two.clone(), web(&[]));
    on_node(Box::new(move |fw| {
        fw.apply_service(Some(&prev), &next).unwrap()
    }));
    refused(&t.c1, VIP, 80);
    refused(&t.c1, VIP, 443);
    refused(&t.node, VIP, 80);
    refused(&t.node, LOCALHOST, 30080);
    refused(&t.client, NODE_LAN, 30080);
    // And back: the first connection after the change is served.
    let (prev, next) = (web(&[]), two.clone());
    on_node(Box::new(move |fw| {
        fw.apply_service(Some(&prev), &next).unwrap()
    }));
    assert!(["c1", "r"].contains(&must_ask(&t.client, NODE_LAN, 30080).name.as_str()));

    // UDP: a VIP and an ingress port.
    on_node(Box::new(|fw| fw.apply_service(None, &dns()).unwrap()));
    assert_eq!(ask_udp(&t.c2, DNS_VIP, 53), answer("c1", 53, GATEWAY));
    assert_eq!(
        ask_udp(&t.client, NODE_LAN, 30053),
        answer("c1", 53, CLIENT)
    );

    // Removal: none of its rules or chains left; the other service untouched.
    let before_dns = t.node.run(read_real);
    on_node(Box::new(|fw| fw.remove_service(&dns()).unwrap()));
    let after = t.node.run(read_real);
    assert_eq!(service_leftovers(&after, "dns"), Vec::<String>::new());
    let dns_lines = |s: &State| -> Vec<String> {
        [Table::Nat, Table::Filter]
            .into_iter()
            .flat_map(|t| s.rule_lines(t))
            .filter(|l| !l.contains("berth:/svc/dns"))
            .collect()
    };
    assert_eq!(dns_lines(&after), dns_lines(&before_dns));

    // An agent restart: a new back-end finds the service by its comments and removes it.
    let names_found = t.node.run(|| IptablesFirewall::new().services().unwrap());
    assert_eq!(names_found.into_iter().collect::<Vec<_>>(), ["web"]);
    t.node
        .run(|| IptablesFirewall::new().remove_service_named("web").unwrap());
    let after = t.node.run(read_real);
    assert_eq!(service_leftovers(&after, "web"), Vec::<String>::new());
    assert_eq!(canon(&after), canon(&set_up));

    // Teardown of the mesh: the network's rules as they were; then nothing of berth's.
    let n = two.clone();
    on_node(Box::new(move |fw| {
        fw.apply_service(None, &n).unwrap();
        fw.apply_service(None, &dns()).unwrap();
        fw.teardown_mesh().unwrap();
    }));
    let after = t.node.run(read_real);
    let without_mesh = t.node.run(|| {
        let mut s = State::default();
        s.apply(&rules::setup(&network(), &s).unwrap().render())
            .unwrap();
        s
    });
    let berth_lines = |s: &State| -> std::collections::BTreeSet<String> {
        [Table::Nat, Table::Filter]
            .into_iter()
            .flat_map(|t| s.rule_lines(t))
            .filter(|l| l.contains("berth:") || l.contains("BERTH"))
            .collect::<std::collections::BTreeSet<String>>()
    };
    assert_eq!(berth_lines(&after), berth_lines(&without_mesh));
    assert!(
        !after
            .chains(Table::Nat)
            .iter()
            .chain(&after.chains(Table::Filter))
            .any(|c| mesh::is_mesh_chain(c)),
        "{after:?}"
    );
    // Host-mode-like traffic still works without the mesh: containers to the remote.
    assert_eq!(must_ask(&t.c1, REMOTE, 80).name, "r");
    on_node(Box::new(|fw| fw.teardown(&network()).unwrap()));
    assert_eq!(
        berth_leftovers(&t.node.run(read_real)),
        Vec::<String>::new()
    );
    if docker_like {
        let save = t.node.run(|| Commands::system().save().unwrap());
        assert!(save.contains(":FORWARD DROP"), "{save}");
        assert!(save.contains("-A FORWARD -j DOCKER-USER"), "{save}");
    }
}

/// Rules or chains of the service `name` in `state`.
fn service_leftovers(state: &State, name: &str) -> Vec<String> {
    let mark = format!("berth:/svc/{name}");
    let svc = mesh::svc_chain(name);
    let mut out = Vec::new();
    for table in [Table::Nat, Table::Filter] {
        out.extend(state.chains(table).into_iter().filter(|c| *c == svc));
        out.extend(
            state
                .rule_lines(table)
                .into_iter()
                .filter(|l| l.contains(&mark) || l.contains(&svc)),
        );
    }
    out
}

/// Names of the links in the host namespace.
fn host_links() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs [`scenario`] as root, or says loudly why not; checks that the host's tables and
/// links are as they were, pass or fail.
fn traffic_test(test: &str, docker_like: bool) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: {test}: needs root");
        return;
    }
    let tables = match host_tables() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED: {test}: no usable iptables: {e}");
            return;
        }
    };
    if let Some(tool) = ["ip", "sh"]
        .into_iter()
        .find(|t| !super::iptables::find(t).is_file())
    {
        eprintln!("SKIPPED: {test}: no {tool}");
        return;
    }
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        eprintln!("SKIPPED: {test}: no br_netfilter sysctls (/proc/sys/net/bridge)");
        return;
    }
    let links = host_links();
    let outcome = catch_unwind(|| scenario(docker_like));
    assert_eq!(
        host_tables().unwrap(),
        tables,
        "{test} changed the host's tables"
    );
    assert_eq!(host_links(), links, "{test} left links on the host");
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

#[test]
fn root_mesh_traffic_beside_docker_in_netns() {
    traffic_test("root_mesh_traffic_beside_docker_in_netns", true);
}

#[test]
fn root_mesh_traffic_without_bridge_netfilter_in_netns() {
    traffic_test("root_mesh_traffic_without_bridge_netfilter_in_netns", false);
}

/// The `n`-th of many services: a VIP, 10 endpoints (on several nodes), one ingress port.
fn many(n: u32, shift: u32) -> ServiceRules {
    ServiceRules {
        name: format!("svc{n}"),
        vip: Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + n)),
        endpoints: (0..10)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 0)) + n * 16 + i + shift))
            .collect(),
        ingress: vec![IngressPort {
            protocol: Proto::Tcp,
            published: 20_000 + n as u16,
            target: 80,
        }],
    }
}

#[test]
fn root_one_service_change_with_1000_services_in_netns() {
    in_fresh_netns(
        "root_one_service_change_with_1000_services_in_netns",
        || {
            let fw = IptablesFirewall::new();
            fw.setup_network(&network()).unwrap();
            fw.setup_mesh(&mesh_config()).unwrap();
            let mut all = Batch::default();
            for n in 0..1000 {
                let plan = mesh::service_plan(&many(n, 0)).unwrap();
                all.ops
                    .extend(mesh::change(&mesh::ServicePlan::empty(&plan.name), &plan).ops);
            }
            let t = Instant::now();
            Commands::system().restore(&all.render()).unwrap();
            let install = t.elapsed();
            let t = Instant::now();
            let save = Commands::system().save().unwrap();
            let save_time = t.elapsed();
            let state = State::parse(&save);
            assert_eq!(mesh::services(&state).len(), 1000);
            let chains = state.chains(Table::Nat).len();
            let rules_count = state.rule_lines(Table::Nat).len();

            // One service's endpoints change (one task replaced), back and forth.
            let v1 = many(500, 0);
            let v2 = many(500, 1);
            let batch = mesh::change(
                &mesh::service_plan(&v1).unwrap(),
                &mesh::service_plan(&v2).unwrap(),
            );
            eprintln!(
                "one endpoint replaced: {} lines\n{}",
                batch.ops.len(),
                batch.render()
            );
            assert!(batch.ops.len() <= 16, "{}", batch.render());
            let mut fast = Vec::new();
            for _ in 0..15 {
                let t = Instant::now();
                fw.apply_service(Some(&v1), &v2).unwrap();
                fast.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                fw.apply_service(Some(&v2), &v1).unwrap();
                fast.push(t.elapsed().as_secs_f64() * 1e3);
            }
            // The exact path (what a refused batch falls back to): a save, then the batch.
            let t = Instant::now();
            let exact = mesh::sync(
                &[mesh::service_plan(&v2).unwrap()],
                mesh::Scope::Service("svc500"),
                &read_real(),
            )
            .unwrap();
            Commands::system().restore(&exact.render()).unwrap();
            let exact_ms = t.elapsed().as_secs_f64() * 1e3;
            let fast_p50 = p50(fast.clone());
            let fast_max = fast.iter().copied().fold(0.0, f64::max);
            eprintln!(
                "1,000 services x 10 endpoints ({chains} nat chains, {rules_count} nat rules): \
             install {:.0} ms, iptables-save {:.0} ms; one service's change (apply_service, \
             fast) p50 {fast_p50:.1} ms, max {fast_max:.1} ms; exact path {exact_ms:.0} ms",
                install.as_secs_f64() * 1e3,
                save_time.as_secs_f64() * 1e3,
            );
            assert!(fast_max < 1000.0, "a change took {fast_max} ms");
            // Nothing else changed: the exact path agrees with the fast one.
            let mut plans: Vec<_> = (0..1000)
                .map(|n| mesh::service_plan(&many(n, if n == 500 { 1 } else { 0 })).unwrap())
                .collect();
            assert!(
                mesh::sync(&plans, mesh::Scope::All, &read_real())
                    .unwrap()
                    .is_empty()
            );
            // sync_services after a restart, with one service gone: one read, one batch.
            plans.pop();
            let listed: Vec<ServiceRules> = (0..999)
                .map(|n| many(n, if n == 500 { 1 } else { 0 }))
                .collect();
            let t = Instant::now();
            fw.sync_services(&listed).unwrap();
            eprintln!(
                "sync_services of 999 over 1,000: {:.0} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            assert_eq!(fw.services().unwrap().len(), 999);
            let t = Instant::now();
            fw.teardown_mesh().unwrap();
            eprintln!(
                "teardown_mesh of 1,000 services: {:.0} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            assert!(
                !read_real()
                    .chains(Table::Nat)
                    .iter()
                    .any(|c| mesh::is_mesh_chain(c))
            );
        },
    );
}
