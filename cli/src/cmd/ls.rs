//! `berth ls`: the services, with their running and desired tasks.

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, ReadArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, services};

/// Runs `berth ls`.
pub async fn run(g: &GlobalArgs, args: &ReadArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let list = client
        .call("list the services", |mut c| async move {
            c.list_services(v1::ListServicesRequest::default()).await
        })
        .await?
        .services;
    let tasks = client
        .call("list the tasks", |mut c| async move {
            c.list_tasks(v1::ListTasksRequest::default()).await
        })
        .await?
        .tasks;
    let summaries = services::summaries(&list, &tasks);
    let text = output::render(args.output, &summaries, || services::table(&summaries))?;
    io.print(&text)?;
    Ok(exit::OK)
}
