//! The multi-host harness: N hosts as network namespaces on a private LAN ([`crate::lan`]),
//! each with its own data directory, running real processes (`berth-controller`,
//! `berth-agent`, or anything else) that can be killed with SIGKILL, stopped, restarted,
//! cut off the LAN and plugged back. Each process's output goes to a log file in its host's
//! directory; the logs are printed when a test fails (the harness is dropped while
//! panicking). Dropping the harness kills every process and removes every namespace and
//! file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lan::Lan;
use crate::netns::NetNs;

/// One process a host runs, and how to start it again.
#[derive(Debug)]
struct Proc {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    starts: u32,
}

/// One host of the harness.
#[derive(Debug)]
pub struct Host {
    /// `h0`, `h1`, …
    pub name: String,
    /// Its network namespace.
    pub ns: Arc<NetNs>,
    /// Its LAN address.
    pub ip: Ipv4Addr,
    /// Its data directory (inside the harness's temporary directory).
    pub dir: PathBuf,
    procs: Mutex<BTreeMap<String, Proc>>,
}

impl Host {
    fn procs(&self) -> MutexGuard<'_, BTreeMap<String, Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `program args` on this host under `name` (a name already running is an error),
    /// with its output appended to `<dir>/<name>.log`.
    pub fn spawn(&self, name: &str, program: impl AsRef<Path>, args: &[&str]) {
        let mut procs = self.procs();
        if procs.get(name).is_some_and(|p| p.child.is_some()) {
            panic!("{}: {name} is already running", self.name);
        }
        let mut p = Proc {
            child: None,
            program: program.as_ref().to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: self.dir.join(format!("{name}.log")),
            starts: procs.get(name).map_or(0, |p| p.starts),
        };
        self.start(name, &mut p);
        procs.insert(name.to_owned(), p);
    }

    fn start(&self, name: &str, p: &mut Proc) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&p.log)
            .expect("open log");
        let mut cmd = self.ns.command(&p.program);
        cmd.args(&p.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        p.starts += 1;
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("{}: start {name} ({}): {e}", self.name, p.program.display())
        });
        p.child = Some(child);
    }

    /// Kills `name` with SIGKILL and reaps it.
    pub fn kill(&self, name: &str) {
        if let Some(mut c) = self.procs().get_mut(name).and_then(|p| p.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to `name` and waits up to `grace` for it to exit, then SIGKILLs it.
    /// Returns whether it exited by itself.
    pub fn stop(&self, name: &str, grace: Duration) -> bool {
        let Some(mut c) = self.procs().get_mut(name).and_then(|p| p.child.take()) else {
            return true;
        };
        // SAFETY: kill with a pid of our own child and a signal number.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts `name` again with the program and arguments it was first started with.
    pub fn restart(&self, name: &str) {
        let mut procs = self.procs();
        let p = procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("{}: {name} was never started", self.name));
        if let Some(mut c) = p.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start(name, p);
    }

    /// Whether `name` runs.
    pub fn is_running(&self, name: &str) -> bool {
        self.procs()
            .get_mut(name)
            .and_then(|p| p.child.as_mut())
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id of `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs()
            .get(name)
            .and_then(|p| p.child.as_ref())
            .map(|c| c.id())
    }

    /// How many times `name` was started.
    pub fn starts(&self, name: &str) -> u32 {
        self.procs().get(name).map_or(0, |p| p.starts)
    }

    /// `name`'s log so far.
    pub fn log(&self, name: &str) -> String {
        self.procs()
            .get(name)
            .and_then(|p| fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    /// Runs `f` on a thread inside this host's network namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.ns.run(f)
    }

    fn kill_all(&self) {
        for p in self.procs().values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn print_logs(&self) {
        for (name, p) in self.procs().iter() {
            let text = fs::read_to_string(&p.log).unwrap_or_default();
            eprintln!(
                "----- {} {name} ({} start(s)) log -----\n{text}----- end of {} {name} -----",
                self.name, p.starts, self.name
            );
        }
    }
}

/// N hosts on a private LAN.
#[derive(Debug)]
pub struct Cluster {
    lan: Lan,
    /// The hosts, `h0` first.
    pub hosts: Vec<Host>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// `n` hosts, each with an empty data directory.
    pub fn new(n: usize) -> Cluster {
        Cluster::segmented(&[n])
    }

    /// Hosts on L3 segments joined by a router (see [`Lan::segmented`]), each with an empty
    /// data directory.
    pub fn segmented(sizes: &[usize]) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("berth-cluster-")
            .tempdir()
            .expect("tempdir");
        let lan = Lan::segmented(sizes);
        let hosts = lan
            .hosts
            .iter()
            .enumerate()
            .map(|(i, (ns, ip))| {
                let dir = tmp.path().join(format!("h{i}"));
                fs::create_dir_all(&dir).expect("host dir");
                Host {
                    name: format!("h{i}"),
                    ns: ns.clone(),
                    ip: *ip,
                    dir,
                    procs: Mutex::new(BTreeMap::new()),
                }
            })
            .collect();
        Cluster {
            lan,
            hosts,
            _tmp: tmp,
        }
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Cuts the hosts in `isolated` off the LAN (their cables unplugged at the switch): they
    /// reach neither the others nor each other.
    pub fn partition(&self, isolated: &[usize]) {
        for &i in isolated {
            self.lan
                .set_connected(i, false)
                .unwrap_or_else(|e| panic!("partition h{i}: {e}"));
        }
    }

    /// Plugs every host back.
    pub fn heal(&self) {
        for i in 0..self.hosts.len() {
            self.lan
                .set_connected(i, true)
                .unwrap_or_else(|e| panic!("heal h{i}: {e}"));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in &self.hosts {
                h.print_logs();
            }
        }
        for h in &self.hosts {
            h.kill_all();
        }
    }
}
