//! Running one probe, bounded by its timeout: a command in the container (through a
//! `berth-agent exec` child: the agent's threads cannot enter a mount namespace, a fresh
//! process can), an HTTP `GET` (hyper) or a TCP connect to the task's address.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::Command;

use super::{Outcome, Probe};

/// Where a probe runs.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The task's address, for HTTP and TCP probes.
    pub address: Option<IpAddr>,
    /// The command line that runs a command in the container, up to the command itself
    /// (`berth-agent --state-dir … exec <container> --`), for `CMD` and `CMD-SHELL`.
    pub exec: Vec<OsString>,
}

/// Runs `probe` against `target`, for at most `timeout`.
pub async fn run(probe: &Probe, target: &Target, timeout: Duration) -> Outcome {
    let at = Instant::now();
    let result = tokio::time::timeout(timeout, attempt(probe, target)).await;
    let took = at.elapsed();
    match result {
        Ok(Ok(output)) => Outcome::new(true, output, at, took),
        Ok(Err(why)) => Outcome::new(false, why, at, took),
        Err(_) => Outcome::new(
            false,
            format!("health check exceeded its timeout ({timeout:?})"),
            at,
            took,
        ),
    }
}

/// One attempt: `Ok(output)` when healthy, `Err(output or why)` when not.
async fn attempt(probe: &Probe, target: &Target) -> Result<String, String> {
    match probe {
        Probe::Cmd(args) => exec(target, args).await,
        Probe::Shell(text) => exec(target, &["/bin/sh".into(), "-c".into(), text.clone()]).await,
        Probe::Http { port, path } => http(address(target, *port)?, path).await,
        Probe::Tcp { port } => {
            let addr = address(target, *port)?;
            TcpStream::connect(addr)
                .await
                .map(|_| format!("connected to {addr}"))
                .map_err(|e| format!("cannot connect to {addr}: {e}"))
        }
    }
}

fn address(target: &Target, port: u16) -> Result<SocketAddr, String> {
    target
        .address
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| "the task has no address to probe".to_owned())
}

/// The command in the container; exit code 0 is healthy. The child is killed if the probe
/// times out (the future is dropped).
async fn exec(target: &Target, args: &[String]) -> Result<String, String> {
    let Some((program, prefix)) = target.exec.split_first() else {
        return Err("no way to run a command in the container".to_owned());
    };
    let out = Command::new(program)
        .args(prefix)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => Ok(text),
        Some(code) => Err(if text.is_empty() {
            format!("exit code {code}")
        } else {
            text
        }),
        None => Err(format!("the check was killed ({})", out.status)),
    }
}

/// `GET path` on `addr`: a 2xx or 3xx status is healthy.
async fn http(addr: SocketAddr, path: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP to {addr}: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "berth-health")
        .body(String::new())
        .map_err(|e| format!("HTTP request for {path:?}: {e}"))?;
    let response = sender.send_request(request).await;
    driver.abort();
    let status = response
        .map_err(|e| format!("HTTP GET {path} on {addr}: {e}"))?
        .status();
    let text = format!("GET {path}: HTTP {status}");
    if status.is_success() || status.is_redirection() {
        Ok(text)
    } else {
        Err(text)
    }
}
