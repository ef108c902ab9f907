//! Test support for berth's end-to-end tests: root checks that skip loudly, a busybox root
//! file system and image archives built from scratch, and [`TestAgent`], which drives the real
//! `berth-agent` binary against a throwaway state directory and cgroup parent and removes
//! everything it made when dropped.

pub mod cluster;
pub mod control_plane;
pub mod env;
pub mod http;
pub mod images;
pub mod lan;
pub mod local;
pub mod netns;
pub mod registry;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when running as root; otherwise prints a loud SKIPPED line for `test`.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("\n*** SKIPPED: {test}: needs root (run the suite as root) ***\n");
    false
}

/// The host's static busybox, if installed (`apt-get install busybox-static`).
pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// True when root and busybox are available; otherwise prints a loud SKIPPED line.
pub fn require_root_and_busybox(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if busybox().is_none() {
        eprintln!(
            "\n*** SKIPPED: {test}: needs busybox-static (apt-get install busybox-static) ***\n"
        );
        return false;
    }
    true
}

/// Writes a minimal busybox root file system into `dir`: `/bin/busybox` with a link per
/// applet, `/etc/passwd` (root, nobody, app 1000), `/etc/group`, `/tmp`.
pub fn busybox_rootfs(dir: &Path) -> std::io::Result<()> {
    let bb = busybox().ok_or_else(|| std::io::Error::other("busybox-static is not installed"))?;
    for d in [
        "bin", "etc", "tmp", "root", "home/app", "proc", "sys", "dev",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy(&bb, dir.join("bin/busybox"))?;
    let list = Command::new(&bb).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )?;
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// The `target/<profile>` directory the running test binary belongs to.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub(crate) static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One agent state directory and cgroup parent for one test; removed (with every container,
/// monitor and cgroup under it) when dropped.
#[derive(Debug)]
pub struct TestAgent {
    /// Temporary root (state dir and scratch files).
    pub tmp: tempfile::TempDir,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The test-only cgroup parent.
    pub cgroup_parent: String,
    /// `berth-agent`.
    pub agent_bin: PathBuf,
    /// `berth-monitor`.
    pub monitor_bin: PathBuf,
    /// Run each command in a private mount namespace of its own (on by default; benchmarks
    /// turn it off to measure exactly what a user runs).
    pub isolate_mounts: bool,
    /// The network namespace the agent runs in (its "host"): a fresh one per test, so that
    /// its bridge, rules and sysctls vanish with it.
    pub netns: std::sync::Arc<netns::NetNs>,
}

impl TestAgent {
    /// A fresh agent using the given binaries.
    pub fn new(agent_bin: impl Into<PathBuf>, monitor_bin: impl Into<PathBuf>) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("tempdir");
        let state_dir = tmp.path().join("state");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self {
            state_dir,
            cgroup_parent: format!("berth-test-{}-{n}", std::process::id()),
            agent_bin: agent_bin.into(),
            monitor_bin: monitor_bin.into(),
            isolate_mounts: true,
            netns: std::sync::Arc::new(
                netns::NetNs::new().expect("a network namespace for the agent"),
            ),
            tmp,
        }
    }

    /// Runs the agent in `ns` instead of a namespace of its own (several agents as hosts on
    /// one LAN).
    pub fn in_netns(mut self, ns: std::sync::Arc<netns::NetNs>) -> Self {
        self.netns = ns;
        self
    }

    /// A command (not the agent) run in the agent's network namespace: the node's "host"
    /// side, e.g. a client on the node's localhost.
    pub fn host_cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.netns.command(program)
    }

    /// A `berth-agent` command bound to this state dir and cgroup parent, run in a private
    /// mount namespace of its own.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.bare_cmd(args);
        c.stdin(Stdio::null());
        self.netns.enter_on_exec(&mut c);
        if !self.isolate_mounts {
            return c;
        }
        // SAFETY: unshare and mount are async-signal-safe system calls made between fork and exec.
        unsafe {
            c.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let root = c"/";
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// A `berth-agent` command bound to this state dir and cgroup parent, run where the
    /// caller is (no namespace of its own, no pre-exec hook: what benchmarks time).
    pub fn bare_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(&self.agent_bin);
        c.arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--monitor")
            .arg(&self.monitor_bin)
            .args(args);
        c
    }

    /// Runs a command to completion with a time limit.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth-agent");
        let pid = child.id() as i32;
        // Output is read while the command runs (a large `ps -o json` fills a pipe).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.expect("output"),
            Err(_) => {
                // SAFETY: kill with a pid and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let out = rx.recv().expect("output").expect("output");
                panic!(
                    "berth-agent timed out: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<std::ffi::OsStr>,
    {
        let shown: Vec<String> = args
            .clone()
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth-agent {} failed ({}):\nstdout: {}\nstderr: {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports a busybox image tagged `reference` (built from the host's busybox-static).
    pub fn busybox_image(&self, reference: &str) {
        let root = self
            .tmp
            .path()
            .join(format!("rootfs-{}", reference.replace([':', '/'], "_")));
        busybox_rootfs(&root).expect("busybox rootfs");
        self.ok([
            "image",
            "import-rootfs",
            root.to_str().expect("utf8"),
            reference,
            "--cmd",
            "sh",
        ]);
    }

    /// `inspect` of one container as JSON.
    pub fn inspect(&self, container: &str) -> serde_json::Value {
        let out = self.ok(["inspect", container]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }

    /// Waits until `f` holds (polling every 20 ms), panicking after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cgroup directories of this test's parent that still exist.
    pub fn cgroup_leftovers(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.cgroup_parent)
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }

    /// Cgroup directories of this test's containers (excluding the parent itself).
    pub fn container_cgroups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in cgroup_dirs(&self.cgroup_parent) {
            if let Ok(rd) = fs::read_dir(&p) {
                out.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir()),
                );
            }
        }
        out
    }
}

/// Every place a cgroup named `rel` could be: each v1 hierarchy, or the v2 root.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.filter_map(|e| e.ok()) {
            out.push(e.path().join(rel));
        }
    }
    out.push(PathBuf::from("/sys/fs/cgroup").join(rel));
    out
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // Kill every monitor and container this test started, then remove the cgroups.
        let containers = self.state_dir.join("containers");
        if let Ok(rd) = fs::read_dir(&containers) {
            for e in rd.filter_map(|e| e.ok()) {
                let _ = fs::write(e.path().join("stop-requested"), b"");
                if let Ok(s) = fs::read_to_string(e.path().join("state.json"))
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
                {
                    for key in ["monitor_pid", "pid"] {
                        if let Some(pid) = v[key].as_i64() {
                            // SAFETY: kill with a pid and a signal number.
                            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                        }
                    }
                }
            }
        }
        for dir in cgroup_dirs(&self.cgroup_parent) {
            if !dir.exists() {
                continue;
            }
            let mut subdirs: Vec<PathBuf> = fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default();
            subdirs.push(dir.clone());
            for d in subdirs {
                for _ in 0..100 {
                    if let Ok(procs) = fs::read_to_string(d.join("cgroup.procs")) {
                        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            // SAFETY: kill with a pid and a signal number.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                    if fs::remove_dir(&d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // Give monitors killed above a moment to go, so the temp dir can be removed.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The median of `v` (NaN when empty), for the benchmarks' reports.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `cmd` to completion with its output captured, killing it and panicking with what it
/// printed so far when it takes longer than `limit`: a test fails instead of hanging.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{cmd:?} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Sets a flag when dropped, so that a thread polling it stops even when the code that would
/// have set it panics (a scoped thread left running would hang the test instead of failing it).
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
