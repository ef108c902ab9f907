//! The `berth` command line end to end (issue 6): the real binary, run as a user would from
//! a host of the harness, against one real `berth-controller` and one real `berth-agent`
//! running busybox containers.
//!
//! One test walks the scenario in order: a context file pointing at the controller with
//! the admin certificate; `apply -f` of a service file (2 replicas of busybox httpd) waits
//! until both run; `ls`, `ps`, `diff` (no change, then a change after editing the file),
//! `scale`, `inspect -o json`, `events` (a stream, killed after an event), `node ls`,
//! `node update --label-add`, `rm`; a bad file is refused with exit 1 and nothing applied;
//! an unreachable controller gives a message that says what to do.
//!
//! Needs root and busybox-static, and the workspace's binaries built
//! (`cargo build --workspace --bins`); skipped loudly otherwise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::control_plane::ControlPlane;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

/// The harness: host 0 runs the controller (and the `berth` commands), host 1 the agent.
struct Env {
    _agent: TestAgent,
    cluster: Cluster,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        for h in &self.cluster.hosts {
            h.kill("agent");
        }
        for h in &self.cluster.hosts {
            h.kill("controller");
        }
    }
}

fn berth_bin() -> PathBuf {
    berth_tests::target_dir().join("berth")
}

impl Env {
    fn start() -> Env {
        let cluster = Cluster::new(2);
        let cp = ControlPlane::start(&cluster, 1, &[], &["--agent-heartbeat-ms", "250"])
            .expect("a controller");
        let agent = cp
            .start_agent(&cluster, 1, &["--stop-timeout-s", "1"])
            .expect("an agent");
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-")
            .tempdir()
            .expect("tempdir");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let ca = write("ca.pem", &cp.ca);
        let cert = write("admin.pem", &cp.admin.cert_pem);
        let key = write("admin.key", &cp.admin.key_pem);
        let config = dir.path().join("config");
        let env = Env {
            _agent: agent,
            cluster,
            config,
            dir,
        };
        let out = env.berth(&[
            "context",
            "add",
            "test",
            "--endpoint",
            &cp.addrs[0],
            "--ca",
            ca.to_str().expect("utf8"),
            "--cert",
            cert.to_str().expect("utf8"),
            "--key",
            key.to_str().expect("utf8"),
        ]);
        assert_ok(&out, "context add");
        env
    }

    /// `berth args` in host 0's network namespace, with the test's configuration.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.cluster.host(0).ns.command(berth_bin());
        c.args(args)
            .env("BERTH_CONFIG", &self.config)
            .env_remove("BERTH_CONTEXT")
            .env_remove("BERTH_ADDR")
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn berth(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("berth runs");
        eprintln!(
            "$ berth {}\n{}{}(exit {:?})",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code()
        );
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.berth(args);
        assert_ok(&out, &args.join(" "));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf8").to_owned()
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < WAIT, "never: {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("{what}: {:.2} s", started.elapsed().as_secs_f64());
    }

    /// `ls -o json`: name → (running, desired).
    fn replicas(&self) -> Vec<(String, u64, u64)> {
        self.json(&["ls", "-o", "json"])
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().expect("name").to_owned(),
                    s["running"].as_u64().expect("running"),
                    s["desired"].as_u64().expect("desired"),
                )
            })
            .collect()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn web(replicas: u32) -> String {
    format!(
        r#"services:
  web:
    image: busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    deploy:
      replicas: {replicas}
"#
    )
}

fn no_panic(out: &Output) {
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
}

#[test]
fn berth_applies_lists_scales_diffs_watches_and_removes() {
    if !berth_tests::require_root_and_busybox(
        "berth_applies_lists_scales_diffs_watches_and_removes",
    ) {
        return;
    }
    assert!(
        Path::new(&berth_bin()).exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        berth_bin().display()
    );
    let env = Env::start();

    // version names the controller that answered.
    let version = env.json(&["version", "-o", "json"]);
    assert_eq!(
        version["server"]["version"], version["client"]["version"],
        "{version}"
    );
    assert_eq!(version["server"]["state"], "leader", "{version}");

    // The node registers.
    env.wait_for("the node is ready", || {
        env.json(&["node", "ls", "-o", "json"])
            .as_array()
            .is_some_and(|n| n.len() == 1 && n[0]["status"] == "ready")
    });
    let out = env.berth(&["node", "ls"]);
    assert_ok(&out, "node ls");
    let table = text(&out.stdout);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("h1") && table.contains("ready"), "{table}");

    // apply waits until both replicas run, with a line of progress per change.
    let file = env.file("web.yaml", &web(2));
    let started = Instant::now();
    let out = env.berth(&["apply", "-f", &file, "--timeout", "60s"]);
    assert_ok(&out, "apply");
    eprintln!(
        "apply converged in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(text(&out.stdout), "web: created (version 1)\n");
    assert!(
        text(&out.stderr).contains("web  2/2 running"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.replicas(), vec![("web".to_owned(), 2, 2)]);

    // ls and ps as tables.
    let out = env.berth(&["ls"]);
    assert_ok(&out, "ls");
    let ls = text(&out.stdout);
    assert!(ls.starts_with("NAME "), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("web ") && l.contains("2/2") && l.contains("busybox:1")),
        "{ls}"
    );
    let out = env.berth(&["ps", "web"]);
    assert_ok(&out, "ps");
    let ps = text(&out.stdout);
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{ps}");
    for (i, row) in rows.iter().enumerate() {
        assert!(
            row.contains(&format!("web.{}", i + 1))
                && row.contains("h1")
                && row.contains("running"),
            "{ps}"
        );
    }
    let tasks = env.json(&["ps", "web", "-o", "json"]);
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");

    // diff: nothing to change, then a change once the file is edited.
    let out = env.berth(&["diff", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("= web (no change)"));
    env.file("web.yaml", &web(3));
    let out = env.berth(&["diff", "-f", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let diff = text(&out.stdout);
    assert!(
        diff.contains("-   replicas: 2") && diff.contains("+   replicas: 3"),
        "{diff}"
    );

    // scale, then inspect as JSON.
    let out = env.berth(&["scale", "web=3"]);
    assert_ok(&out, "scale");
    env.wait_for("3 replicas run", || {
        env.replicas() == vec![("web".to_owned(), 3, 3)]
    });
    let inspect = env.json(&["inspect", "web", "-o", "json"]);
    assert_eq!(inspect["name"], "web");
    assert_eq!(inspect["spec"]["replicas"], 3);
    assert_eq!(inspect["spec"]["image"], "busybox:1");
    assert_eq!(inspect["version"], 2);
    assert_eq!(inspect["history"][0]["version"], 1);
    // The file now says what the cluster runs.
    let out = env.berth(&["diff", "-f", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // events: a stream; scaling makes task events.
    let mut child = env
        .command(&["events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth events runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The stream starts at the call: scale once it had time to open.
    std::thread::sleep(Duration::from_millis(500));
    assert_ok(&env.berth(&["scale", "web=1"]), "scale to 1");
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("an event within 20 s");
    let _ = child.kill();
    let _ = child.wait();
    let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert!(
        ["service", "task"].contains(&event["kind"].as_str().unwrap_or_default()),
        "{line}"
    );
    env.wait_for("1 replica runs", || {
        env.replicas() == vec![("web".to_owned(), 1, 1)]
    });

    logs_exec_and_images(&env);

    // Node labels.
    let out = env.berth(&["node", "update", "--label-add", "zone=a", "h1"]);
    assert_ok(&out, "node update");
    let node = env.json(&["node", "inspect", "h1", "-o", "json"]);
    assert_eq!(node["labels"]["zone"], "a", "{node}");
    let out = env.berth(&["node", "update", "--label-add", "zone=b", "nosuchnode"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("berth node ls"),
        "{}",
        text(&out.stderr)
    );

    // A bad file: exit 1, the finding shown, nothing sent.
    let bad = env.file(
        "bad.yaml",
        "services:\n  bad:\n    image: busybox:1\n    ports:\n      - 70000\n",
    );
    let out = env.berth(&["apply", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    no_panic(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("70000") && stderr.contains("nothing was sent to the cluster"),
        "{stderr}"
    );
    assert!(env.replicas().iter().all(|(n, _, _)| n != "bad"));

    // A service that fits nowhere: apply gives up after its timeout with exit 3, naming
    // the service and why its tasks wait; the service stays applied.
    let nowhere = env.file(
        "nowhere.yaml",
        "services:\n  nowhere:\n    image: busybox:1\n    command: [\"sleep\", \"1000\"]\n    deploy:\n      placement:\n        constraints: [\"node.labels.zone==mars\"]\n",
    );
    let out = env.berth(&["apply", "-f", &nowhere, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    no_panic(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nowhere: 0/1 running") && stderr.contains("nowhere.1 pending"),
        "{stderr}"
    );
    // Ctrl-C while waiting: exit 130, the service stays applied.
    let child = env
        .command(&["apply", "-f", &nowhere])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth apply runs");
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("berth apply ends");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("error: interrupted while waiting"),
        "{}",
        text(&out.stderr)
    );
    // --detach returns at once; `-f -` reads standard input.
    let mut child = env
        .command(&["apply", "--detach", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth apply runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(web(1).replace("web:", "stdin:").as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("berth apply ends");
    assert_ok(&out, "apply --detach -f -");
    assert_eq!(text(&out.stdout), "stdin: created (version 1)\n");
    assert_ok(&env.berth(&["rm", "nowhere", "stdin"]), "rm nowhere stdin");

    // Draining the node stops its tasks (there is no other node to move them to), and
    // ps --all shows the ended one under its slot; activating it runs the slot again.
    assert_ok(&env.berth(&["node", "drain", "h1"]), "node drain");
    let node = env.json(&["node", "inspect", "h1", "-o", "json"]);
    assert_eq!(node["availability"], "drain", "{node}");
    env.wait_for("web has no running task on the drained node", || {
        env.replicas() == vec![("web".to_owned(), 0, 1)]
    });
    assert_ok(&env.berth(&["node", "activate", "h1"]), "node activate");
    env.wait_for("web runs again", || {
        env.replicas() == vec![("web".to_owned(), 1, 1)]
    });
    let out = env.berth(&["ps", "--all", "web"]);
    assert_ok(&out, "ps --all");
    let ps = text(&out.stdout);
    assert!(ps.contains(" \\_ web.1"), "{ps}");

    // rm.
    let out = env.berth(&["rm", "web"]);
    assert_ok(&out, "rm");
    assert_eq!(text(&out.stdout), "web: removed\n");
    assert!(env.replicas().is_empty());
    let out = env.berth(&["rm", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );

    // An unreachable controller: a message that says what to do, no panic.
    let out = env.berth(&["--addr", "127.0.0.1:1", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    no_panic(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot reach any controller of context `test` (127.0.0.1:1:"),
        "{stderr}"
    );
}

/// `logs`, `exec` and `image`, which reach the node through the controller.
fn logs_exec_and_images(env: &Env) {
    let talker = env.file(
        "talker.yaml",
        "services:\n  talker:\n    image: busybox:1\n    command: [\"sh\", \"-c\", \"echo hello from $$(hostname); echo oops >&2; exec sleep 1000\"]\n",
    );
    assert_ok(
        &env.berth(&["apply", "-f", &talker, "--timeout", "60s"]),
        "apply talker",
    );
    // The lines reach the log once the shell ran.
    env.wait_for("talker's lines are in its log", || {
        let out = env.berth(&["logs", "talker"]);
        out.status.success()
            && text(&out.stdout).contains("hello from")
            && text(&out.stderr).contains("oops")
    });
    let out = env.berth(&["logs", "talker"]);
    // A service's lines say which task wrote them.
    assert!(
        text(&out.stdout).starts_with("talker.1@h1 | hello from "),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stderr), "talker.1@h1 | oops\n");
    let out = env.berth(&["logs", "--tail", "1", "--no-prefix", "-o", "json", "talker"]);
    assert_ok(&out, "logs -o json");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["stream"], "stderr");
    assert_eq!(lines[0]["line"], "oops");
    assert_eq!(lines[0]["name"], "talker.1@h1");
    // A task by its id prefix: no prefix on its lines.
    let tasks = env.json(&["ps", "talker", "-o", "json"]);
    let id = tasks[0]["id"].as_str().expect("task id").to_owned();
    let out = env.berth(&["logs", &id[..12]]);
    assert_ok(&out, "logs TASK");
    assert!(
        text(&out.stdout).starts_with("hello from "),
        "{}",
        text(&out.stdout)
    );
    // Since the future: nothing.
    let out = env.berth(&["logs", "--since", "2099-01-01T00:00:00Z", "talker"]);
    assert_ok(&out, "logs --since");
    assert_eq!(text(&out.stdout), "");

    // exec: the command's output and exit code; stdin with -i.
    let out = env.berth(&[
        "exec",
        "talker",
        "sh",
        "-c",
        "echo in $(hostname); echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("in "),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stderr), "err\n");
    let mut child = env
        .command(&["exec", "-i", &id[..12], "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth exec runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"piped through\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("berth exec ends");
    assert_ok(&out, "exec -i");
    assert_eq!(text(&out.stdout), "PIPED THROUGH\n");
    // A terminal: the command sees one.
    let out = env.berth(&["exec", "-t", "talker", "sh", "-c", "test -t 1 && echo tty"]);
    assert_ok(&out, "exec -t");
    assert_eq!(text(&out.stdout).trim_end(), "tty");

    // logs -f: a line written later arrives while following.
    let mut follower = env
        .command(&["logs", "-f", "--no-prefix", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth logs -f runs");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the stored line")
            .starts_with("hello from")
    );
    assert_ok(
        &env.berth(&["exec", "talker", "sh", "-c", "echo later > /proc/1/fd/1"]),
        "exec writing to the log",
    );
    let later = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the new line while following");
    assert_eq!(later, "later");
    let _ = follower.kill();
    let _ = follower.wait();

    // Bad targets say what is wrong.
    let out = env.berth(&["exec", "nosuch", "true"]);
    assert_eq!(out.status.code(), Some(1));
    no_panic(&out);
    assert!(
        text(&out.stderr).contains("no service or task named \"nosuch\""),
        "{}",
        text(&out.stderr)
    );
    let out = env.berth(&["logs", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
    assert_ok(&env.berth(&["rm", "talker"]), "rm talker");

    // Images: import an archive into the node, list, refuse to remove one in use, remove.
    let archive = env.dir.path().join("tiny.tar");
    let layer = berth_tests::images::layer_tar(&[berth_tests::images::Entry::File(
        "hello.txt".into(),
        b"hi\n".to_vec(),
        0o644,
    )]);
    berth_tests::images::write_docker_save(
        &archive,
        "tiny:1",
        &[layer],
        serde_json::json!({"Cmd": ["/hello"]}),
    );
    let out = env.berth(&["image", "import", archive.to_str().expect("utf8")]);
    assert_ok(&out, "image import");
    assert!(
        text(&out.stdout).starts_with("h1: loaded tiny:1"),
        "{}",
        text(&out.stdout)
    );
    let images = env.json(&["image", "ls", "-o", "json"]);
    let names: Vec<String> = images
        .as_array()
        .expect("a list")
        .iter()
        .flat_map(|i| i["tags"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    assert!(
        names.contains(&"tiny:1".to_owned()) && names.contains(&"busybox:1".to_owned()),
        "{images}"
    );
    let out = env.berth(&["image", "ls"]);
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("tiny:1 ") && l.ends_with("1/1 (h1)")),
        "{}",
        text(&out.stdout)
    );
    let out = env.berth(&["image", "rm", "busybox:1"]);
    assert_eq!(out.status.code(), Some(1), "busybox:1 is in use by web");
    assert!(
        text(&out.stderr).contains("node h1"),
        "{}",
        text(&out.stderr)
    );
    let out = env.berth(&["image", "rm", "tiny:1"]);
    assert_ok(&out, "image rm");
    assert!(
        text(&out.stdout).starts_with("h1: deleted sha256:"),
        "{}",
        text(&out.stdout)
    );
    let out = env.berth(&["image", "ls"]);
    assert!(
        !text(&out.stdout).contains("tiny:1"),
        "{}",
        text(&out.stdout)
    );
    let out = env.berth(&["image", "import", "/nonexistent.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent.tar"),
        "{}",
        text(&out.stderr)
    );
}
