//! `berth apply -f FILE|DIR|- ...`: parse every file first (any error: print the findings,
//! send nothing), apply each service, then wait until every one has converged, showing the
//! progress on standard error (`--detach`: do not wait).

use std::time::{Duration, Instant};

use berth_proto::v1;

use super::Io;
use crate::args::{ApplyArgs, GlobalArgs};
use crate::client::{Client, ClientError};
use crate::error::CliError;
use crate::exit;
use crate::progress::{self, Display, Progress};
use crate::servicefile::format_duration;

/// How often the tasks are listed while waiting, besides when an event arrives.
const POLL: Duration = Duration::from_millis(500);

/// Runs `berth apply`.
pub async fn run(g: &GlobalArgs, args: &ApplyArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let specs = super::files::read_specs(&args.files.files, io)?;
    let client = super::connect(g, io).await?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let request = v1::ApplyServicesRequest {
        services: specs
            .into_iter()
            .map(|spec| v1::ApplyServiceRequest {
                spec: Some(spec),
                expected_version: None,
            })
            .collect(),
    };
    // One call for every service: the controller applies them concurrently.
    let what = match names.as_slice() {
        [one] => format!("apply {one}"),
        _ => format!("apply {} services", names.len()),
    };
    let results = client
        .call(&what, |mut c| {
            let request = request.clone();
            async move { c.apply_services(request).await }
        })
        .await?
        .results;
    let mut applied = Vec::new();
    let mut failed = None;
    for (name, result) in names.iter().zip(results) {
        match result.result {
            Some(v1::apply_service_result::Result::Applied(response)) => {
                let service = response.service.unwrap_or_default();
                io.print(&format!(
                    "{name}: {} (version {})\n",
                    response.outcome, service.version
                ))?;
                applied.push(service);
            }
            Some(v1::apply_service_result::Result::Failure(f)) => {
                let status = tonic::Status::new(tonic::Code::from_i32(f.code), f.message);
                let e = ClientError::call(format!("apply {name}"), &status);
                // The first failure is the command's error; the others are noted.
                if failed.is_some() {
                    io.note(&format!("error: {e}\n"));
                }
                failed.get_or_insert(e);
            }
            None => {
                let status = tonic::Status::internal("the controller gave no answer");
                failed.get_or_insert(ClientError::call(format!("apply {name}"), &status));
            }
        }
    }
    if let Some(e) = failed {
        // The others were applied (said above); the first failure is the command's error.
        return Err(e.into());
    }
    if args.detach {
        return Ok(exit::OK);
    }
    io.out.flush().map_err(CliError::Write)?;
    wait(&client, &applied, args.timeout, io).await
}

/// The progress of each service from the cluster's tasks.
async fn poll(client: &Client, services: &[v1::Service]) -> Result<Vec<Progress>, ClientError> {
    let tasks = client
        .call("list the tasks", |mut c| async move {
            c.list_tasks(v1::ListTasksRequest::default()).await
        })
        .await?
        .tasks;
    Ok(services
        .iter()
        .map(|s| progress::progress(s, &tasks))
        .collect())
}

/// Waits until every service has converged, or `timeout`, or Ctrl-C.
async fn wait(
    client: &Client,
    services: &[v1::Service],
    timeout: Duration,
    io: &mut Io<'_>,
) -> Result<u8, CliError> {
    tokio::select! {
        result = follow(client, services, timeout, io) => result,
        // Without a handler (it cannot fail on Linux) Ctrl-C still ends the process.
        Ok(()) = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
    }
}

/// Follows the services until every one has converged, or `timeout`.
async fn follow(
    client: &Client,
    services: &[v1::Service],
    timeout: Duration,
    io: &mut Io<'_>,
) -> Result<u8, CliError> {
    let started = Instant::now();
    let deadline = started + timeout;
    // Events only wake the loop up early; without them it polls.
    let mut events = client
        .control()
        .watch_events(v1::WatchEventsRequest {
            kinds: vec![v1::EventKind::Task as i32],
            service: String::new(),
        })
        .await
        .ok()
        .map(tonic::Response::into_inner);
    let width = io
        .env
        .get("COLUMNS")
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 10)
        .unwrap_or(80);
    let mut display = Display::new(io.err_is_terminal.then_some(width));
    loop {
        let now = poll(client, services).await?;
        let text = display.update(&now);
        io.note(&text);
        if now.iter().all(Progress::converged) {
            io.note(&format!(
                "{} service(s) running as declared after {:.1} s\n",
                now.len(),
                started.elapsed().as_secs_f64()
            ));
            return Ok(exit::OK);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CliError::NotConverged {
                timeout: format_duration(timeout),
                details: progress::not_converged(&now),
            });
        }
        let nap = tokio::time::sleep(POLL.min(left));
        match events.as_mut() {
            Some(stream) => {
                tokio::select! {
                    m = stream.message() => {
                        if !matches!(m, Ok(Some(_))) {
                            events = None;
                        }
                        // Let a burst of changes settle before listing again.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    () = nap => {}
                }
            }
            None => nap.await,
        }
    }
}
