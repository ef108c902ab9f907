//! A process in a task's container, for a client: `berth-agent exec` run as a child (the
//! agent's threads cannot enter a mount namespace; a fresh process can), its stdio on pipes,
//! or on a pseudo-terminal with `tty`.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use berth_proto::v1::{ExecExit, ExecSpec, NodeExec, TerminalSize, attach_down, attach_up};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tonic::Code;
use tracing::debug;

use super::{Down, Up};
use crate::node::runtime::RuntimeExecutor;

/// How much output one frame carries at most.
const CHUNK: usize = 32 * 1024;

/// Serves `Exec` of one task.
pub(super) async fn serve(ex: Arc<RuntimeExecutor>, r: NodeExec, down: Down, up: Up) {
    let spec = r.spec.unwrap_or_default();
    if spec.command.is_empty() {
        up.fail(Code::InvalidArgument, "exec needs a command").await;
        return;
    }
    let lookup = {
        let ex = ex.clone();
        let task = r.task_id.clone();
        tokio::task::spawn_blocking(move || ex.container_of(&task)).await
    };
    let name = match lookup {
        Ok(Ok(Some(name))) => name,
        Ok(Ok(None)) => {
            let message = format!("task {} has no container on this node", r.task_id);
            up.fail(Code::NotFound, message).await;
            return;
        }
        Ok(Err(e)) => return up.fail(Code::Internal, e.to_string()).await,
        Err(e) => return up.fail(Code::Internal, e.to_string()).await,
    };
    let line = ex.exec_command_line();
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..]);
    for e in &spec.env {
        cmd.args(["--env", e]);
    }
    if !spec.user.is_empty() {
        cmd.args(["--user", &spec.user]);
    }
    if !spec.workdir.is_empty() {
        cmd.args(["--workdir", &spec.workdir]);
    }
    cmd.arg(&name).arg("--").args(&spec.command);
    cmd.kill_on_drop(true);
    debug!(task = %r.task_id, container = %name, tty = spec.tty, "exec");
    let ended = if spec.tty {
        with_tty(cmd, &spec, down, &up).await
    } else {
        with_pipes(cmd, &spec, down, &up).await
    };
    match ended {
        Ok(Some(status)) => {
            let code = exit_code(status);
            up.send(attach_up::Frame::Exit(ExecExit { code })).await;
        }
        // The client left: the child was killed on drop.
        Ok(None) => {}
        Err(e) => up.fail(Code::Internal, e).await,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Copies `from` to the client as `frame` frames until its end.
async fn copy_out(
    mut from: impl AsyncRead + Unpin,
    up: &Up,
    frame: fn(Vec<u8>) -> attach_up::Frame,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !up.send(frame(buf[..n].to_vec())).await {
                    return;
                }
            }
        }
    }
}

/// Copies the client's stdin frames to `to` (closing it at the client's end of input) and
/// applies resizes; returns when the client is gone (true) or its input ended (false).
async fn copy_in(
    down: &mut Down,
    mut to: Option<impl AsyncWrite + Unpin>,
    resize: &(dyn Fn(&TerminalSize) + Sync),
) -> bool {
    loop {
        match down.next().await.and_then(|d| d.frame) {
            Some(attach_down::Frame::Stdin(bytes)) => {
                if let Some(w) = to.as_mut()
                    && (w.write_all(&bytes).await.is_err() || w.flush().await.is_err())
                {
                    to = None;
                }
            }
            Some(attach_down::Frame::StdinEnd(_)) => {
                if let Some(mut w) = to.take() {
                    let _ = w.shutdown().await;
                }
            }
            Some(attach_down::Frame::Resize(size)) => resize(&size),
            Some(_) => {}
            None => return true,
        }
    }
}

/// Waits for `child` while its output is copied out and the client's input in; `None`
/// when the client left first.
async fn supervise(
    mut child: Child,
    output: impl Future<Output = ()>,
    input: impl Future<Output = bool>,
) -> Result<Option<ExitStatus>, String> {
    let mut output = std::pin::pin!(output);
    let mut input = std::pin::pin!(input);
    let mut output_done = false;
    let mut input_done = false;
    let mut status = None;
    loop {
        tokio::select! {
            () = &mut output, if !output_done => output_done = true,
            gone = &mut input, if !input_done => {
                input_done = true;
                if gone {
                    let _ = child.kill().await;
                    return Ok(None);
                }
            }
            s = child.wait(), if status.is_none() => {
                status = Some(s.map_err(|e| format!("waiting for the exec'd process: {e}"))?);
            }
        }
        if let Some(s) = status
            && output_done
        {
            return Ok(Some(s));
        }
    }
}

async fn with_pipes(
    mut cmd: Command,
    spec: &ExecSpec,
    mut down: Down,
    up: &Up,
) -> Result<Option<ExitStatus>, String> {
    cmd.stdin(if spec.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run berth-agent exec: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = async {
        let out = async {
            if let Some(o) = stdout {
                copy_out(o, up, attach_up::Frame::Stdout).await;
            }
        };
        let err = async {
            if let Some(e) = stderr {
                copy_out(e, up, attach_up::Frame::Stderr).await;
            }
        };
        tokio::join!(out, err);
    };
    let input = copy_in(&mut down, stdin, &|_| {});
    supervise(child, output, input).await
}

/// Sets the terminal size of the pseudo-terminal `master`.
fn set_size(master: &OwnedFd, size: &TerminalSize) {
    let size = berth_runtime::tty::WindowSize {
        rows: u16::try_from(size.rows).unwrap_or(u16::MAX),
        cols: u16::try_from(size.cols).unwrap_or(u16::MAX),
    };
    if let Err(e) = berth_runtime::tty::set_window_size(master.as_fd(), size) {
        debug!(error = %e, "cannot resize the exec's terminal");
    }
}

async fn with_tty(
    mut cmd: Command,
    spec: &ExecSpec,
    mut down: Down,
    up: &Up,
) -> Result<Option<ExitStatus>, String> {
    let pty = nix::pty::openpty(None, None).map_err(|e| format!("cannot open a pty: {e}"))?;
    if let Some(size) = &spec.size {
        set_size(&pty.master, size);
    }
    let slave = std::fs::File::from(pty.slave);
    let io = |f: &std::fs::File| f.try_clone().map_err(|e| format!("pty: {e}"));
    cmd.stdin(io(&slave)?)
        .stdout(io(&slave)?)
        .stderr(io(&slave)?);
    // SAFETY: runs in the child between fork and exec, calling only async-signal-safe
    // functions: a new session, with the pty (its stdin) as its controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run berth-agent exec: {e}"))?;
    // The command keeps copies of the slave for its stdio: with any copy open here, reading
    // the master would never end.
    drop(cmd);
    drop(slave);
    let master = pty.master;
    let reader = tokio::fs::File::from_std(std::fs::File::from(
        master.try_clone().map_err(|e| format!("pty: {e}"))?,
    ));
    let writer = tokio::fs::File::from_std(std::fs::File::from(
        master.try_clone().map_err(|e| format!("pty: {e}"))?,
    ));
    // Reading the master ends with EIO once every slave end is closed (the process ended).
    let output = copy_out(reader, up, attach_up::Frame::Stdout);
    let resize = |s: &TerminalSize| set_size(&master, s);
    let input = copy_in(&mut down, spec.stdin.then_some(writer), &resize);
    supervise(child, output, input).await
}
