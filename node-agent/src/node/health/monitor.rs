//! A task's health check running on its node: probes on the [`Tracker`]'s schedule, each
//! change of health sent to the worker, until the worker aborts it (the task stopped).

use std::time::{Duration, Instant};

use berth_proto::v1;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::probe::{self, Target};
use super::{Health, HealthCheck, HealthCheckError, Probe, Tracker};

/// A change of one task's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// The task.
    pub task_id: String,
    /// Its health now.
    pub health: Health,
    /// What the probe that changed it printed, or why it failed.
    pub output: String,
}

/// The check of a service spec's `healthcheck`; `Ok(None)` when it has none (or its kind is
/// one this build does not know, which the controller never sends).
pub fn from_wire(h: &v1::ServiceHealthCheck) -> Result<Option<HealthCheck>, HealthCheckError> {
    use v1::HealthProbeKind as K;
    let port = || u16::try_from(h.port).map_err(|_| HealthCheckError::Port);
    let probe = match K::try_from(h.kind) {
        Ok(K::Cmd) => Probe::Cmd(h.command.clone()),
        Ok(K::CmdShell) => Probe::Shell(h.command.join(" ")),
        Ok(K::Http) => Probe::Http {
            port: port()?,
            path: if h.path.is_empty() {
                "/".to_owned()
            } else {
                h.path.clone()
            },
        },
        Ok(K::Tcp) => Probe::Tcp { port: port()? },
        Ok(K::Unspecified) | Err(_) => return Ok(None),
    };
    let ms = |v: u64, default: Duration| {
        if v == 0 {
            default
        } else {
            Duration::from_millis(v)
        }
    };
    let check = HealthCheck {
        probe,
        interval: ms(h.interval_ms, super::DEFAULT_INTERVAL),
        timeout: ms(h.timeout_ms, super::DEFAULT_TIMEOUT),
        retries: if h.retries == 0 {
            super::DEFAULT_RETRIES
        } else {
            h.retries
        },
        start_period: Duration::from_millis(h.start_period_ms),
        start_interval: ms(h.start_interval_ms, super::DEFAULT_START_INTERVAL),
    };
    check.validate()?;
    Ok(Some(check))
}

/// Probes `task_id`'s container at `target` under `check` from `started` on, sending every
/// change of health to `events`; returns when `events` is closed. Run it as its own tokio
/// task and abort it when the task stops.
pub async fn watch(
    task_id: String,
    check: HealthCheck,
    target: Target,
    started: Instant,
    events: mpsc::Sender<HealthEvent>,
) {
    let mut tracker = Tracker::new(check, started);
    debug!(task = %task_id, probe = %tracker.check().probe, "health check started");
    loop {
        tokio::time::sleep_until(tracker.next_due().into()).await;
        let outcome = probe::run(&tracker.check().probe, &target, tracker.check().timeout).await;
        let output = outcome.output.clone();
        let Some(health) = tracker.record(outcome) else {
            continue;
        };
        info!(task = %task_id, %health, output = %output.trim_end(), "task health changed");
        let event = HealthEvent {
            task_id: task_id.clone(),
            health,
            output,
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
