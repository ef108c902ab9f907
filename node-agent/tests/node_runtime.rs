//! The real-runtime executor (`berth_agent::node::runtime`) end to end, as root: each test
//! drives a `RuntimeExecutor` in this process from a thread inside a throwaway network
//! namespace, with a test-only cgroup parent and a temporary state directory (a
//! `TestAgent`, which also kills whatever a failed test left running), and checks that
//! removing its tasks leaves no container, cgroup, veth or port rule behind.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use berth_agent::container::AgentConfig;
use berth_agent::net::NetConfig;
use berth_agent::net::link::veth_names;
use berth_agent::node::runtime::{RuntimeExecutor, RuntimeOptions};
use berth_agent::node::{Executor, Observed, Phase};
use berth_proto::v1::{Assignment, Protocol, ServicePort, ServiceSpec};
use berth_tests::TestAgent;
use common::{agent_with_busybox, iptables_rules, links_in};
use ipnet::Ipv4Net;

const WEB: &str =
    "mkdir -p /www && echo hello-from-task > /www/index.html && exec httpd -f -p 80 -h /www";

fn subnet() -> Ipv4Net {
    "10.231.7.0/24".parse().unwrap()
}

fn config(a: &TestAgent) -> AgentConfig {
    AgentConfig {
        state_dir: a.state_dir.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
        monitor_bin: a.monitor_bin.clone(),
        network: NetConfig::default(),
        agent_bin: Some(a.agent_bin.clone()),
    }
}

fn executor(a: &TestAgent) -> RuntimeExecutor {
    RuntimeExecutor::with_options(
        config(a),
        RuntimeOptions {
            stop_timeout: Some(Duration::from_secs(1)),
            registries: Default::default(),
        },
    )
    .expect("executor")
}

fn task(id: &str, slot: u32, image: &str, cmd: &[&str], ports: Vec<ServicePort>) -> Assignment {
    Assignment {
        task_id: id.into(),
        service: "svc".into(),
        slot,
        spec_version: 1,
        spec: Some(ServiceSpec {
            name: "svc".into(),
            image: image.into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ports,
            labels: [("team".to_string(), "test".to_string())].into(),
            ..ServiceSpec::default()
        }),
        ..Assignment::default()
    }
}

fn web_task(id: &str, slot: u32, published: u32) -> Assignment {
    task(
        id,
        slot,
        "bb",
        &["sh", "-c", WEB],
        vec![ServicePort {
            target: 80,
            published,
            protocol: Protocol::Tcp as i32,
            mode: berth_proto::v1::PortMode::Host as i32,
        }],
    )
}

fn tid(n: u32) -> String {
    format!("task{n:04}abcdef0123456789")
}

/// `GET /` at `addr` from the calling thread's namespace; the body or why it failed.
fn http_get(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    match resp.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("bad response from {addr}: {resp:?}")),
    }
}

fn wait_http(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(addr) {
            Ok(body) => return body,
            Err(e) => assert!(Instant::now() < deadline, "{addr} never answered: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find(ex: &RuntimeExecutor, task_id: &str) -> Option<Observed> {
    ex.list()
        .expect("list")
        .into_iter()
        .find(|o| o.task_id == task_id)
}

/// Waits until the task has ended; returns its state.
fn wait_end(ex: &RuntimeExecutor, task_id: &str) -> Observed {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = find(ex, task_id).unwrap_or_else(|| panic!("{task_id} is not listed"));
        if o.phase.is_end() {
            return o;
        }
        assert!(Instant::now() < deadline, "{task_id} never ended: {o:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many containers carry `berth.task=<task_id>`.
fn containers_of(ex: &RuntimeExecutor, task_id: &str) -> usize {
    ex.manager()
        .list(true)
        .unwrap()
        .iter()
        .filter(|c| c.spec.labels.get("berth.task").map(String::as_str) == Some(task_id))
        .count()
}

/// The containers that have a cgroup under the test's parent (in any hierarchy).
fn cgroup_ids(a: &TestAgent) -> Vec<String> {
    let mut ids: Vec<String> = a
        .container_cgroups()
        .iter()
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Removes every task and checks that nothing of them is left: no container, no cgroup,
/// no veth, no port rule.
fn remove_all_and_check_clean(a: &TestAgent, ex: &RuntimeExecutor) {
    for o in ex.list().unwrap() {
        ex.remove(&o.task_id).unwrap();
    }
    assert_eq!(ex.list().unwrap(), vec![]);
    // Containers made by hand may stay, with their cgroups.
    let others: Vec<String> = ex
        .manager()
        .list(true)
        .unwrap()
        .into_iter()
        .map(|c| c.spec.id)
        .collect();
    let left: Vec<String> = cgroup_ids(a)
        .into_iter()
        .filter(|id| !others.contains(id))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "task cgroups left");
    let theirs: Vec<String> = others.iter().map(|id| veth_names(id).0).collect();
    let links = links_in(&a.netns);
    assert!(
        !links
            .iter()
            .any(|l| l.starts_with("bth") && !theirs.contains(l)),
        "{links:?}"
    );
    let rules = iptables_rules(&a.netns);
    assert!(!rules.contains("DNAT --to-destination"), "{rules}");
}

#[test]
fn a_task_runs_with_published_ports_and_start_is_idempotent() {
    let test = "a_task_runs_with_published_ports_and_start_is_idempotent";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        let fixed = web_task(&tid(1), 1, 8080);
        let o = ex.start(&fixed).unwrap();
        assert_eq!(o.phase, Phase::Running, "{o:?}");
        assert_eq!(o.task_id, tid(1));
        let ip = o.address.expect("an address");
        assert!(subnet().contains(&ip), "{ip}");
        // Published on the node, and reachable directly on the bridge.
        assert_eq!(wait_http("127.0.0.1:8080"), "hello-from-task");
        assert_eq!(wait_http(&format!("{ip}:80")), "hello-from-task");

        // No published port: the node chooses one.
        let chosen = web_task(&tid(2), 2, 0);
        let o2 = ex.start(&chosen).unwrap();
        assert_eq!(o2.phase, Phase::Running);
        let info = ex
            .manager()
            .inspect(&format!("svc.2.{}", &tid(2)[..12]))
            .unwrap();
        let port = info.network.expect("attached").ports[0].host_port;
        assert_ne!(port, 0);
        assert_eq!(wait_http(&format!("127.0.0.1:{port}")), "hello-from-task");
        assert_eq!(info.spec.labels["team"], "test");
        assert_eq!(info.spec.labels["berth.service"], "svc");
        assert_eq!(info.spec.labels["berth.slot"], "2");
        assert_eq!(info.spec.labels["berth.spec-version"], "1");

        // Starting it again: the same container, the same state.
        let again = ex.start(&fixed).unwrap();
        assert_eq!(again, o);
        assert_eq!(containers_of(&ex, &tid(1)), 1);

        let mut listed = ex.list().unwrap();
        listed.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        assert_eq!(listed, vec![o, o2]);
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn tasks_that_exit_are_complete_or_failed() {
    let test = "tasks_that_exit_are_complete_or_failed";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        ex.start(&task(&tid(1), 1, "bb", &["true"], vec![]))
            .unwrap();
        ex.start(&task(&tid(2), 2, "bb", &["sh", "-c", "exit 3"], vec![]))
            .unwrap();
        let ok = wait_end(&ex, &tid(1));
        assert_eq!(
            (ok.phase, ok.exit_code, ok.address),
            (Phase::Complete, Some(0), None)
        );
        let bad = wait_end(&ex, &tid(2));
        assert_eq!(
            (bad.phase, bad.exit_code),
            (Phase::Failed, Some(3)),
            "{bad:?}"
        );
        assert_eq!(bad.reason.as_deref(), Some("exited with code 3"));

        // A command that is not there: failed at start, with the reason, and kept.
        let o = ex
            .start(&task(&tid(3), 3, "bb", &["no-such-program"], vec![]))
            .unwrap();
        assert_eq!((o.phase, o.exit_code), (Phase::Failed, Some(127)), "{o:?}");
        let reason = o.reason.unwrap();
        assert!(reason.contains("no-such-program"), "{reason}");
        assert_eq!(find(&ex, &tid(3)).unwrap().phase, Phase::Failed);
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn stop_keeps_the_container_and_remove_takes_everything() {
    let test = "stop_keeps_the_container_and_remove_takes_everything";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        let t = web_task(&tid(1), 1, 8081);
        ex.start(&t).unwrap();
        wait_http("127.0.0.1:8081");
        assert!(iptables_rules(&a.netns).contains("--dport 8081"));
        assert_eq!(cgroup_ids(&a).len(), 1);

        let started = Instant::now();
        let o = ex.stop(&tid(1)).unwrap();
        // httpd as pid 1 ignores SIGTERM: killed after the 1 s grace period.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(
            (o.phase, o.exit_code, o.address),
            (Phase::Shutdown, Some(137), None),
            "{o:?}"
        );
        assert_eq!(cgroup_ids(&a), Vec::<String>::new());
        assert_eq!(find(&ex, &tid(1)).unwrap().phase, Phase::Shutdown);
        assert_eq!(containers_of(&ex, &tid(1)), 1);
        // Its port and cgroup went with the process; the container stays.
        assert!(!iptables_rules(&a.netns).contains("--dport 8081"));
        assert!(http_get("127.0.0.1:8081").is_err());
        // Stopping again, or a task that has no container, is not an error.
        assert_eq!(ex.stop(&tid(1)).unwrap().phase, Phase::Shutdown);
        assert_eq!(ex.stop("no-such-task").unwrap().phase, Phase::Shutdown);

        // Remove a running one: stopped, then everything it had is gone.
        ex.start(&web_task(&tid(2), 2, 8082)).unwrap();
        wait_http("127.0.0.1:8082");
        ex.remove(&tid(2)).unwrap();
        assert_eq!(containers_of(&ex, &tid(2)), 0);
        assert!(find(&ex, &tid(2)).is_none());
        assert!(!iptables_rules(&a.netns).contains("--dport 8082"));
        // Removing what is gone is not an error.
        ex.remove(&tid(2)).unwrap();
        ex.remove(&tid(1)).unwrap();
        assert_eq!(containers_of(&ex, &tid(1)), 0);
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn containers_made_by_hand_are_neither_listed_nor_touched() {
    let test = "containers_made_by_hand_are_neither_listed_nor_touched";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        // `berth-agent` on the same node, with the same network as the executor's.
        let subnet = subnet().to_string();
        a.ok([
            "--subnet", &subnet, "run", "-d", "--name", "byhand", "bb", "sleep", "1000",
        ]);
        assert_eq!(ex.list().unwrap(), vec![]);
        ex.start(&task(&tid(1), 1, "bb", &["sleep", "1000"], vec![]))
            .unwrap();
        assert_eq!(ex.list().unwrap().len(), 1);
        remove_all_and_check_clean(&a, &ex);
        assert!(ex.manager().inspect("byhand").unwrap().is_active());
        a.ok(["rm", "-f", "byhand"]);
    });
}

#[test]
fn a_missing_image_or_spec_is_an_error_naming_it() {
    let test = "a_missing_image_or_spec_is_an_error_naming_it";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        let err = ex
            .start(&task(&tid(1), 1, "nope:2", &["true"], vec![]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image nope:2 is not in this node's image store"),
            "{err}"
        );
        assert!(err.contains("names no registry"), "{err}");
        assert!(err.contains("berth image import"), "{err}");
        assert!(err.contains(&tid(1)), "{err}");
        let mut no_spec = task(&tid(2), 1, "bb", &["true"], vec![]);
        no_spec.spec = None;
        let err = ex.start(&no_spec).unwrap_err().to_string();
        assert!(err.contains(&tid(2)) && err.contains("no spec"), "{err}");
        // A published port that is taken: an error, and nothing is left of the task.
        ex.start(&web_task(&tid(3), 1, 8083)).unwrap();
        let o = ex.start(&web_task(&tid(4), 2, 8083));
        match o {
            Ok(o) => assert_eq!(o.phase, Phase::Failed, "{o:?}"),
            Err(e) => assert!(e.to_string().contains("8083"), "{e}"),
        }
        assert_eq!(
            ex.list().unwrap().len(),
            1 + usize::from(find(&ex, &tid(4)).is_some())
        );
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn a_restarted_agent_sees_every_task_including_stopped_ones() {
    let test = "a_restarted_agent_sees_every_task_including_stopped_ones";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let (running, done, stopped) = (tid(1), tid(2), tid(3));
        let before = {
            let ex = executor(&a);
            ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
                .unwrap();
            ex.start(&web_task(&running, 1, 8084)).unwrap();
            ex.start(&task(&done, 2, "bb", &["true"], vec![])).unwrap();
            ex.start(&task(&stopped, 3, "bb", &["sleep", "1000"], vec![]))
                .unwrap();
            wait_end(&ex, &done);
            ex.stop(&stopped).unwrap();
            let mut l = ex.list().unwrap();
            l.sort_by(|x, y| x.task_id.cmp(&y.task_id));
            l
        };
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        let mut after = ex.list().unwrap();
        after.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        assert_eq!(after, before);
        let phases: Vec<Phase> = after.iter().map(|o| o.phase).collect();
        assert_eq!(phases, [Phase::Running, Phase::Complete, Phase::Shutdown]);
        assert!(after[0].address.is_some());
        assert_eq!(wait_http("127.0.0.1:8084"), "hello-from-task");
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn prepare_moves_a_free_subnet_and_refuses_one_in_use() {
    let test = "prepare_moves_a_free_subnet_and_refuses_one_in_use";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet()))
            .unwrap();
        let o = ex
            .start(&task(&tid(1), 1, "bb", &["sleep", "1000"], vec![]))
            .unwrap();
        assert!(subnet().contains(&o.address.unwrap()));
        let other: Ipv4Net = "10.232.0.0/16".parse().unwrap();
        let err = ex
            .prepare(&berth_agent::node::NodeNetInfo::for_subnet(other))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10.231.7.0/24") && err.contains("10.232.0.0/16"),
            "{err}"
        );
        // Nothing changed: the task still runs where it was.
        assert_eq!(find(&ex, &tid(1)).unwrap(), o);
        ex.remove(&tid(1)).unwrap();
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(other))
            .unwrap();
        let o = ex
            .start(&task(&tid(2), 1, "bb", &["sleep", "1000"], vec![]))
            .unwrap();
        assert_eq!(o.address, Some(Ipv4Addr::new(10, 232, 0, 2)));
        let rules = iptables_rules(&a.netns);
        assert!(
            rules.contains("-s 10.232.0.0/16") && !rules.contains("10.231.7.0/24"),
            "{rules}"
        );
        remove_all_and_check_clean(&a, &ex);
    });
}

#[test]
fn fifty_tasks_started_concurrently_and_the_cost_of_list() {
    let test = "fifty_tasks_started_concurrently_and_the_cost_of_list";
    let Some(a) = agent_with_busybox(test) else {
        return;
    };
    const N: u32 = 50;
    const THREADS: u32 = 5;
    a.netns.run(|| {
        let ex = executor(&a);
        ex.prepare(&berth_agent::node::NodeNetInfo::for_subnet(subnet())).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            for th in 0..THREADS {
                let ex = &ex;
                s.spawn(move || {
                    for n in (0..N).filter(|n| n % THREADS == th) {
                        let o = ex
                            .start(&task(&tid(n), n + 1, "bb", &["sleep", "1000"], vec![]))
                            .unwrap();
                        assert_eq!(o.phase, Phase::Running, "{o:?}");
                    }
                });
            }
        });
        eprintln!("started {N} tasks from {THREADS} threads in {:?}", started.elapsed());
        let listed = ex.list().unwrap();
        assert_eq!(listed.len(), N as usize);
        let mut addrs: Vec<_> = listed.iter().map(|o| o.address.unwrap()).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), N as usize, "addresses handed out twice");
        assert!(listed.iter().all(|o| o.phase == Phase::Running));
        // Each monitor holds its own container's descriptors only, not those of containers
        // started at the same moment from other threads.
        for c in ex.manager().list(true).unwrap() {
            let pid = c.state.monitor_pid.expect("a monitor");
            let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            let netns = fds.iter().filter(|f| f.starts_with("net:")).count();
            assert!(netns <= 1, "monitor {pid} of {} holds {fds:?}", c.spec.name);
        }

        // Timed as min and median of many rounds: the machine may be busy with other work.
        let stats = |mut d: Vec<Duration>| {
            d.sort();
            (d[0], d[d.len() / 2])
        };
        let rounds = 60;
        let cached = stats(
            (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    assert_eq!(ex.list().unwrap().len(), N as usize);
                    t.elapsed()
                })
                .collect(),
        );
        let uncached = stats(
            (0..rounds / 4)
                .map(|_| {
                    let fresh = executor(&a);
                    let t = Instant::now();
                    assert_eq!(fresh.list().unwrap().len(), N as usize);
                    t.elapsed()
                })
                .collect(),
        );
        let m = ex.manager();
        let full = stats(
            (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    assert!(m.list(true).unwrap().len() >= N as usize);
                    t.elapsed()
                })
                .collect(),
        );
        eprintln!(
            "list() of {N} task containers (min / median): {:?} / {:?}; with every spec read \
             (a new executor): {:?} / {:?}; ContainerManager::list(all) for comparison: {:?} / {:?}",
            cached.0, cached.1, uncached.0, uncached.1, full.0, full.1
        );

        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..THREADS {
                let ex = &ex;
                s.spawn(move || {
                    for n in (0..N).filter(|n| n % THREADS == th) {
                        ex.remove(&tid(n)).unwrap();
                    }
                });
            }
        });
        eprintln!("removed {N} tasks from {THREADS} threads in {:?}", t.elapsed());
        remove_all_and_check_clean(&a, &ex);
    });
}
