//! A background process of the embedded default: started detached (its own process group,
//! output appended to `<name>.log`), found again through `<name>.pid`, stopped with SIGTERM
//! and, after a grace period, SIGKILL.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LocalError;

/// One daemon of the data directory.
#[derive(Debug)]
pub struct Daemon {
    name: &'static str,
    pid_path: PathBuf,
    log_path: PathBuf,
    /// The process, when this `berth` started it (to notice an early exit), and the length
    /// of its log then.
    child: Mutex<Option<(Child, u64)>>,
}

impl Daemon {
    /// The daemon `name` (`controller` or `agent`) of `data_dir`.
    pub fn new(name: &'static str, data_dir: &Path) -> Self {
        Daemon {
            name,
            pid_path: data_dir.join(format!("{name}.pid")),
            log_path: data_dir.join(format!("{name}.log")),
            child: Mutex::new(None),
        }
    }

    /// Its log.
    pub fn log(&self) -> &Path {
        &self.log_path
    }

    /// The process id in the pid file, if that process still runs a berth program.
    fn pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(&self.pid_path)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // A zombie (state Z after the command name's closing parenthesis) no longer runs.
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let berth = cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|exe| String::from_utf8_lossy(exe).contains("berth-"));
        (berth && !zombie).then_some(pid)
    }

    /// Whether it runs.
    pub fn running(&self) -> bool {
        self.pid().is_some()
    }

    /// Starts `cmd` as this daemon, detached from the caller's terminal and signals.
    pub fn start(&self, cmd: &mut Command) -> Result<(), LocalError> {
        let open = || {
            File::options()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .map_err(|e| LocalError::io("open", &self.log_path, e))
        };
        let offset = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?)
            .process_group(0)
            .spawn()
            .map_err(|e| LocalError::io("start", format!("{:?}", cmd.get_program()), e))?;
        fs::write(&self.pid_path, format!("{}\n", child.id()))
            .map_err(|e| LocalError::io("write", &self.pid_path, e))?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, offset));
        Ok(())
    }

    /// Whether its log has a line with `needle` since this `berth` started it; true for a
    /// daemon it did not start.
    pub fn logged_since_start(&self, needle: &str) -> bool {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, offset)) = child.as_ref() else {
            return true;
        };
        let Ok(bytes) = fs::read(&self.log_path) else {
            return false;
        };
        let start = usize::try_from(*offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).contains(needle)
    }

    /// An error with the end of its log if the process this `berth` started has exited.
    pub fn check_alive(&self) -> Result<(), LocalError> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let exited = match child.as_mut() {
            Some((c, _)) => matches!(c.try_wait(), Ok(Some(_))),
            None => false,
        };
        if exited {
            return Err(LocalError::DaemonExited {
                name: self.name,
                log: self.log_path.clone(),
                tail: tail(&self.log_path, 20),
            });
        }
        Ok(())
    }

    /// Stops it: SIGTERM, then SIGKILL after `grace`. Answers whether it was running.
    pub fn stop(&self, grace: Duration) -> Result<bool, LocalError> {
        let Some(pid) = self.pid() else {
            let _ = fs::remove_file(&self.pid_path);
            return Ok(false);
        };
        let pid = Pid::from_raw(pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.pid().is_some() {
            let _ = kill(pid, Signal::SIGKILL);
            while self.pid().is_some() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        fs::remove_file(&self.pid_path).map_err(|e| LocalError::io("remove", &self.pid_path, e))?;
        Ok(true)
    }
}

/// The last `n` lines of `path` (empty when unreadable).
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
