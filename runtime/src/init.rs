//! The container's first process between `clone` and `execve`: it builds the root file
//! system, sets hostname, user and capabilities, finds the entrypoint and executes it.
//!
//! It runs in a freshly cloned child of the single-threaded monitor, so it may allocate; its
//! only way to report failure is the message it returns, which the caller writes to the
//! start pipe.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Gid, Uid};

use crate::paths::ContainerDir;
use crate::rootfs::{self, SetupError};
use crate::spec::{ContainerSpec, NetworkMode};
use crate::{caps, net, user};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code of a container that could not be set up (as `docker run` uses 125).
pub const EXIT_SETUP: i32 = 125;
/// Exit code of a container whose entrypoint cannot be found (as Docker and shells use).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a container whose entrypoint cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// Sets the container up and executes its entrypoint; returns only on failure.
///
/// `release` is called right before `execve` and must return only once the process may run
/// the user's code (the monitor has put it into its cgroup): the root file system is built
/// meanwhile, in parallel with the cgroup work.
pub fn run(
    spec: &ContainerSpec,
    dir: &ContainerDir,
    release: &mut dyn FnMut() -> Result<(), SetupError>,
) -> Result<Infallible, (i32, SetupError)> {
    crate::timing::mark("init: cloned");
    setup(spec, dir).map_err(|e| (EXIT_SETUP, e))?;
    crate::timing::mark("init: rootfs ready");
    let env = container_env(spec);
    let process = Process {
        args: &spec.args,
        env: &env,
        user: &spec.user,
        cwd: &spec.cwd,
    };
    exec_process(spec, &process, release)
}

/// What to execute inside a prepared container: its entrypoint, or a process for `exec`.
#[derive(Debug, Clone, Copy)]
pub struct Process<'a> {
    /// Program and arguments.
    pub args: &'a [String],
    /// `KEY=VALUE` environment (PATH, HOSTNAME and HOME are added when missing).
    pub env: &'a [String],
    /// User spec, resolved against the container's `/etc/passwd` and `/etc/group`.
    pub user: &'a str,
    /// Working directory (created when missing, as Docker does).
    pub cwd: &'a str,
}

/// Becomes `process.user` with the container's capabilities and executes `process.args`.
/// The caller is already inside the container's namespaces and root; `release` is called
/// last before `execve`. Returns only on failure.
pub fn exec_process(
    spec: &ContainerSpec,
    process: &Process<'_>,
    release: &mut dyn FnMut() -> Result<(), SetupError>,
) -> Result<Infallible, (i32, SetupError)> {
    let user = resolve_user(process.user).map_err(|e| (EXIT_SETUP, e))?;
    let env = environment(process.env, &spec.hostname, &user.home);
    let capset = caps::to_set(&spec.capabilities).map_err(|e| (EXIT_SETUP, e.to_string()))?;

    if !process.cwd.is_empty() {
        fs::create_dir_all(process.cwd).map_err(|e| {
            (
                EXIT_SETUP,
                format!("working directory {}: {e}", process.cwd),
            )
        })?;
    }
    caps::limit_bounding(&capset)
        .map_err(|e| (EXIT_SETUP, format!("capability bounding set: {e}")))?;
    // Keep the permitted set across setuid; the effective set is set explicitly below.
    nix::sys::prctl::set_keepcaps(true)
        .map_err(|e| (EXIT_SETUP, format!("prctl keepcaps: {e}")))?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups)
        .map_err(|e| (EXIT_SETUP, format!("setgroups {:?}: {e}", user.groups)))?;
    nix::unistd::setresgid(
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
    )
    .map_err(|e| (EXIT_SETUP, format!("setgid {}: {e}", user.gid)))?;
    nix::unistd::setresuid(
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
    )
    .map_err(|e| (EXIT_SETUP, format!("setuid {}: {e}", user.uid)))?;
    // Docker gives a non-root user no effective or permitted capabilities; the bounding set
    // still limits what a setuid binary can gain.
    let effective = if user.uid == 0 {
        capset
    } else {
        Default::default()
    };
    caps::apply(&effective).map_err(|e| (EXIT_SETUP, format!("capabilities: {e}")))?;
    nix::sys::prctl::set_keepcaps(false)
        .map_err(|e| (EXIT_SETUP, format!("prctl keepcaps: {e}")))?;
    if spec.no_new_privileges {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| (EXIT_SETUP, format!("no_new_privs: {e}")))?;
    }
    if !process.cwd.is_empty() {
        nix::unistd::chdir(process.cwd)
            .map_err(|e| (EXIT_SETUP, format!("chdir {}: {e}", process.cwd)))?;
    }

    let program = find_program(&process.args[0], &env)?;
    let argv = cstrings(process.args.iter().map(|s| s.as_bytes())).map_err(|e| (EXIT_SETUP, e))?;
    let envp = cstrings(env.iter().map(|s| s.as_bytes())).map_err(|e| (EXIT_SETUP, e))?;
    let path =
        CString::new(program.as_os_str().as_bytes()).map_err(|e| (EXIT_SETUP, e.to_string()))?;
    release().map_err(|e| (EXIT_SETUP, e))?;
    crate::timing::mark("init: released, exec");
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    let code = if e == nix::errno::Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    Err((code, format!("exec {}: {e}", program.display())))
}

fn setup(spec: &ContainerSpec, dir: &ContainerDir) -> Result<(), SetupError> {
    use nix::mount::{MsFlags, mount};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make mounts private: {e}"))?;
    rootfs::mount_overlay(spec, dir)?;
    let root = dir.rootfs();
    rootfs::setup_mounts(spec, dir, &root)?;
    rootfs::pivot(&root)?;
    if spec.rootfs.read_only {
        rootfs::make_root_readonly()?;
    }
    nix::unistd::sethostname(&spec.hostname)
        .map_err(|e| format!("sethostname {:?}: {e}", spec.hostname))?;
    if spec.network == NetworkMode::None {
        net::loopback_up().map_err(|e| format!("bring loopback up: {e}"))?;
    }
    Ok(())
}

fn resolve_user(spec: &str) -> Result<user::ExecUser, SetupError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    user::resolve(spec, &passwd, &group).map_err(|e| e.to_string())
}

/// The container's configured environment: Docker's link variables ([`ContainerSpec::link_env`])
/// first, then the spec's own `env`, which replaces a link variable of the same name.
pub fn container_env(spec: &ContainerSpec) -> Vec<String> {
    let mut env = spec.link_env.clone();
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    env
}

/// The process environment: the spec's, plus `PATH`, `HOSTNAME` and `HOME` when missing,
/// as Docker adds them.
pub fn environment(base: &[String], hostname: &str, home: &str) -> Vec<String> {
    let mut env = base.to_vec();
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(n, _)| n == k))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Finds `name` like `execvp` with the container's `PATH`, reporting Docker-like errors.
pub fn find_program(name: &str, env: &[String]) -> Result<PathBuf, (i32, SetupError)> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match fs::metadata(&p) {
            Err(e) => Err((EXIT_NOT_FOUND, format!("entrypoint {name:?}: {e}"))),
            Ok(m) if m.is_dir() => Err((
                EXIT_NOT_EXECUTABLE,
                format!("entrypoint {name:?} is a directory"),
            )),
            Ok(_) => Ok(p),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for d in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(d).join(name);
        if let Ok(m) = fs::metadata(&p)
            && m.is_file()
            && nix::unistd::access(&p, AccessFlags::X_OK).is_ok()
        {
            return Ok(p);
        }
    }
    Err((
        EXIT_NOT_FOUND,
        format!("entrypoint {name:?}: executable file not found in $PATH ({path})"),
    ))
}

fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<Vec<CString>, SetupError> {
    items
        .map(|b| {
            CString::new(b).map_err(|_| {
                format!(
                    "argument or variable {:?} contains a NUL byte",
                    String::from_utf8_lossy(b)
                )
            })
        })
        .collect()
}
