//! `berth exec`: a command in a running task's container, on whichever node runs it,
//! through the controllers; its output here, this standard input there (`-i`), and a
//! terminal (`-t`) whose size follows this one.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use berth_proto::v1;
use berth_proto::v1::exec_request::Frame as In;
use berth_proto::v1::exec_response::Frame as Out;
use nix::sys::termios;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Io;
use crate::args::{ExecArgs, GlobalArgs};
use crate::client::ClientError;
use crate::error::CliError;

/// How much of standard input one frame carries at most.
const CHUNK: usize = 32 * 1024;

/// This terminal's size, if standard output is one.
fn terminal_size() -> Option<v1::TerminalSize> {
    let size = berth_runtime::tty::window_size(std::io::stdout().as_fd())?;
    Some(v1::TerminalSize {
        rows: u32::from(size.rows),
        cols: u32::from(size.cols),
    })
}

/// Puts standard input in raw mode while it lives (keys go to the remote terminal as
/// typed, Ctrl-C included); restores it when dropped.
struct RawMode(termios::Termios);

impl RawMode {
    fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &self.0);
    }
}

/// Sends standard input as frames from a thread of its own (reads block), then its end.
fn forward_stdin(tx: mpsc::Sender<v1::ExecRequest>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let frame = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => In::StdinEnd(true),
                Ok(n) => In::Stdin(buf[..n].to_vec()),
            };
            let end = matches!(frame, In::StdinEnd(_));
            if tx
                .blocking_send(v1::ExecRequest { frame: Some(frame) })
                .is_err()
                || end
            {
                return;
            }
        }
    });
}

/// Runs `berth exec`; its exit code is the command's.
pub async fn run(g: &GlobalArgs, args: &ExecArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let tty = args.tty;
    let size = if tty { terminal_size() } else { None };
    let (tx, rx) = mpsc::channel(16);
    let start = v1::ExecStart {
        target: args.target.clone(),
        spec: Some(v1::ExecSpec {
            command: args.command.clone(),
            tty,
            stdin: args.interactive,
            env: args.env.clone(),
            user: args.user.clone().unwrap_or_default(),
            workdir: args.workdir.clone().unwrap_or_default(),
            size,
        }),
    };
    let _ = tx
        .send(v1::ExecRequest {
            frame: Some(In::Start(start)),
        })
        .await;
    let what = format!("exec in {}", args.target);
    let mut stream = client
        .control()
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| ClientError::call(&what, &s))?
        .into_inner();
    let _raw = (tty && args.interactive && std::io::stdin().is_terminal())
        .then(RawMode::enable)
        .flatten();
    if args.interactive {
        forward_stdin(tx.clone());
    }
    let mut winch = if tty {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    loop {
        let next = tokio::select! {
            m = stream.message() => m,
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => None } } => {
                if let Some(size) = terminal_size() {
                    let _ = tx.send(v1::ExecRequest { frame: Some(In::Resize(size)) }).await;
                }
                continue;
            }
        };
        match next {
            Ok(Some(v1::ExecResponse { frame: Some(f) })) => match f {
                Out::Started(_) => {}
                Out::Stdout(b) => {
                    io.out.write_all(&b).map_err(CliError::Write)?;
                    io.out.flush().map_err(CliError::Write)?;
                }
                Out::Stderr(b) => {
                    let _ = io.err.write_all(&b);
                    let _ = io.err.flush();
                }
                Out::Exit(e) => return Ok(u8::try_from(e.code.clamp(0, 255)).unwrap_or(255)),
            },
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(CliError::StreamEnded(
                    "the exec ended without an exit code".into(),
                ));
            }
            Err(s) => return Err(ClientError::call(&what, &s).into()),
        }
    }
}
