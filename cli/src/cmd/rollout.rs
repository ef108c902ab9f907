//! `berth rollout status | history | undo | pause | resume | restart SERVICE`.

use std::time::{Duration, Instant};

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, RolloutCommand};
use crate::client::Client;
use crate::error::CliError;
use crate::exit;
use crate::output::rollout::{self, Progress};

/// How often `status` looks.
const POLL: Duration = Duration::from_millis(200);

/// Runs `berth rollout`.
pub async fn run(g: &GlobalArgs, c: &RolloutCommand, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let (name, action, to) = match c {
        RolloutCommand::Status(a) => {
            let limit = (a.timeout > 0).then(|| Duration::from_secs(a.timeout));
            return status(&client, &a.service, a.no_wait, limit, io).await;
        }
        RolloutCommand::History(a) => {
            let service = super::get_service(&client, &a.service).await?;
            io.print(&rollout::history(&service))?;
            return Ok(exit::OK);
        }
        RolloutCommand::Undo(a) => (&a.service, v1::RolloutAction::Undo, a.to_revision),
        RolloutCommand::Pause(a) => (&a.service, v1::RolloutAction::Pause, None),
        RolloutCommand::Resume(a) => (&a.service, v1::RolloutAction::Resume, None),
        RolloutCommand::Restart(a) => (&a.service, v1::RolloutAction::Restart, None),
    };
    let response = client
        .call(
            &format!("rollout {} {name}", action.as_str_name()),
            |mut c| {
                let request = v1::RolloutServiceRequest {
                    name: name.clone(),
                    action: action.into(),
                    to_version: to.unwrap_or(0),
                };
                async move { c.rollout_service(request).await }
            },
        )
        .await?;
    let service = response.service.unwrap_or_default();
    let said = match action {
        v1::RolloutAction::Pause => "rollout paused".to_owned(),
        v1::RolloutAction::Resume => "rollout resumed".to_owned(),
        v1::RolloutAction::Undo => format!(
            "rolling back to the spec of version {} (now version {})",
            to.map_or_else(|| "before".to_owned(), |v| v.to_string()),
            service.version
        ),
        _ => format!("restarting every task (version {})", service.version),
    };
    io.print(&format!("{name}: {said}\n"))?;
    Ok(exit::OK)
}

/// Follows the rollout: a bar redrawn on a terminal, a line per change otherwise.
async fn status(
    client: &Client,
    name: &str,
    no_wait: bool,
    limit: Option<Duration>,
    io: &mut Io<'_>,
) -> Result<u8, CliError> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let service = super::get_service(client, name).await?;
        let p: Progress = rollout::progress(&service, &super::list_tasks(client, name).await?);
        let line = p.line(name, 20);
        let ended = p.ended();
        if ended.is_some() || no_wait {
            if io.err_is_terminal && !last.is_empty() {
                io.note("\r\x1b[2K");
            }
            io.print(&format!("{line}\n"))?;
            return Ok(match ended {
                Some(true) => exit::OK,
                Some(false) => exit::ERROR,
                None => exit::NOT_CONVERGED,
            });
        }
        if line != last {
            if io.err_is_terminal {
                io.note(&format!("\r\x1b[2K{line}"));
            } else {
                io.note(&format!("{line}\n"));
            }
            last = line;
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            io.note("\n");
            return Ok(exit::NOT_CONVERGED);
        }
        tokio::time::sleep(POLL).await;
    }
}
