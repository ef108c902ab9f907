//! Health checks of a task's container, as Docker runs them: a probe every `interval`, each
//! allowed `timeout`; `retries` failures in a row make the task unhealthy, one success makes
//! it healthy; during `start_period` failures do not count (a success still does) and probes
//! run every `start_interval`.
//!
//! [`Tracker`] is the pure state machine (when the next probe is due, what a result does);
//! [`probe`] runs the probes: a command in the container (`CMD` / `CMD-SHELL`, through
//! `berth-agent exec`), an HTTP `GET` or a TCP connect to the task's address, from the node.

pub mod monitor;
pub mod probe;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Docker's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// The time a probe may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Failures in a row before unhealthy, by default.
pub const DEFAULT_RETRIES: u32 = 3;
/// The probe period during the start period, by default.
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
/// How many results are kept for display (Docker keeps 5).
pub const KEPT_RESULTS: usize = 5;
/// How much of a probe's output is kept (Docker keeps 4 KiB).
pub const MAX_OUTPUT: usize = 4096;

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `["CMD", args...]`: run in the container; exit code 0 is healthy.
    Cmd(Vec<String>),
    /// `["CMD-SHELL", "text"]`: run with `/bin/sh -c` in the container.
    Shell(String),
    /// `GET http://<task address>:<port><path>`: a 2xx or 3xx status is healthy.
    Http {
        /// The container's port.
        port: u16,
        /// The path, starting with `/`.
        path: String,
    },
    /// A TCP connection to `<task address>:<port>` accepted is healthy.
    Tcp {
        /// The container's port.
        port: u16,
    },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Cmd(args) => write!(f, "CMD {}", args.join(" ")),
            Probe::Shell(text) => write!(f, "CMD-SHELL {text}"),
            Probe::Http { port, path } => write!(f, "HTTP GET :{port}{path}"),
            Probe::Tcp { port } => write!(f, "TCP :{port}"),
        }
    }
}

/// A health check: the probe and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What runs.
    pub probe: Probe,
    /// Time between probes once started.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Failures in a row before unhealthy (at least 1).
    pub retries: u32,
    /// Grace time after the container starts.
    pub start_period: Duration,
    /// Time between probes during the start period.
    pub start_interval: Duration,
}

/// Why a health check is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthCheckError {
    /// A duration that must be positive is zero.
    #[error("healthcheck {field} must be more than 0")]
    Zero {
        /// `interval`, `timeout` or `start_interval`.
        field: &'static str,
    },
    /// `retries: 0`.
    #[error("healthcheck retries must be at least 1")]
    NoRetries,
    /// An empty command.
    #[error("healthcheck test has no command")]
    EmptyCommand,
    /// Port 0.
    #[error("healthcheck port must be 1-65535")]
    Port,
    /// An HTTP path not starting with `/`.
    #[error("healthcheck HTTP path {0:?} must start with /")]
    Path(String),
}

impl HealthCheck {
    /// `probe` with Docker's default timing.
    pub fn new(probe: Probe) -> HealthCheck {
        HealthCheck {
            probe,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            start_period: Duration::ZERO,
            start_interval: DEFAULT_START_INTERVAL,
        }
    }

    /// Checks the values a probe loop cannot work with.
    pub fn validate(&self) -> Result<(), HealthCheckError> {
        for (field, d) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("start_interval", self.start_interval),
        ] {
            if d.is_zero() {
                return Err(HealthCheckError::Zero { field });
            }
        }
        if self.retries == 0 {
            return Err(HealthCheckError::NoRetries);
        }
        match &self.probe {
            Probe::Cmd(args) if args.first().is_none_or(|a| a.is_empty()) => {
                Err(HealthCheckError::EmptyCommand)
            }
            Probe::Shell(text) if text.trim().is_empty() => Err(HealthCheckError::EmptyCommand),
            Probe::Http { port: 0, .. } | Probe::Tcp { port: 0 } => Err(HealthCheckError::Port),
            Probe::Http { path, .. } if !path.starts_with('/') => {
                Err(HealthCheckError::Path(path.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// A task's health, as `berth ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No probe has succeeded yet, and not enough have failed.
    Starting,
    /// The last probe succeeded.
    Healthy,
    /// `retries` probes in a row failed (outside the start period).
    Unhealthy,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Healthy.
    pub ok: bool,
    /// What it printed or why it failed (at most [`MAX_OUTPUT`] bytes).
    pub output: String,
    /// When it started.
    pub at: Instant,
    /// How long it took.
    pub took: Duration,
}

impl Outcome {
    /// A result, its output cut to [`MAX_OUTPUT`] bytes (on a character boundary).
    pub fn new(ok: bool, output: impl Into<String>, at: Instant, took: Duration) -> Outcome {
        let mut output = output.into();
        if output.len() > MAX_OUTPUT {
            let mut end = MAX_OUTPUT;
            while !output.is_char_boundary(end) {
                end -= 1;
            }
            output.truncate(end);
        }
        Outcome {
            ok,
            output,
            at,
            took,
        }
    }
}

/// The health of one container, from its probes' results.
#[derive(Debug, Clone)]
pub struct Tracker {
    check: HealthCheck,
    started: Instant,
    health: Health,
    failing: u32,
    next: Instant,
    results: VecDeque<Outcome>,
}

impl Tracker {
    /// A container started at `started`: starting, its first probe due one (start)
    /// interval later.
    pub fn new(check: HealthCheck, started: Instant) -> Tracker {
        let mut t = Tracker {
            check,
            started,
            health: Health::Starting,
            failing: 0,
            next: started,
            results: VecDeque::new(),
        };
        t.next = started + t.period(started);
        t
    }

    /// The check.
    pub fn check(&self) -> &HealthCheck {
        &self.check
    }

    /// The health now.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Failures in a row.
    pub fn failing_streak(&self) -> u32 {
        self.failing
    }

    /// The last results, oldest first.
    pub fn results(&self) -> impl Iterator<Item = &Outcome> {
        self.results.iter()
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// Whether `at` falls in the start period.
    pub fn in_start_period(&self, at: Instant) -> bool {
        at < self.started + self.check.start_period
    }

    /// The period between probes at `at`: `start_interval` during the start period while no
    /// probe has succeeded, `interval` after.
    fn period(&self, at: Instant) -> Duration {
        if self.in_start_period(at) && self.health == Health::Starting {
            self.check.start_interval
        } else {
            self.check.interval
        }
    }

    /// Records a probe's result (finished at `outcome.at + outcome.took`); returns the new
    /// health when it changed. A failure during the start period does not count; a success
    /// always does (and ends the start period's faster probing).
    pub fn record(&mut self, outcome: Outcome) -> Option<Health> {
        let done = outcome.at + outcome.took;
        let before = self.health;
        if outcome.ok {
            self.failing = 0;
            self.health = Health::Healthy;
        } else if !self.in_start_period(outcome.at) {
            self.failing += 1;
            if self.failing >= self.check.retries {
                self.health = Health::Unhealthy;
            }
        }
        if self.results.len() == KEPT_RESULTS {
            self.results.pop_front();
        }
        self.results.push_back(outcome);
        self.next = done + self.period(done);
        (self.health != before).then_some(self.health)
    }
}
