//! `berth ps [SERVICE]`: the tasks, one slot at a time, with their node, state, age and
//! error; `--all` adds each slot's ended tasks.

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, PsArgs};
use crate::client::ClientError;
use crate::error::CliError;
use crate::exit;
use crate::output::model::node_names;
use crate::output::tasks::{self, PsOptions};
use crate::output::{self, time};

/// Runs `berth ps`.
pub async fn run(g: &GlobalArgs, args: &PsArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let service = args.service.clone().unwrap_or_default();
    if !service.is_empty() {
        // An unknown service is an error, not an empty list.
        let name = service.clone();
        client
            .call(&format!("ps {service}"), |mut c| {
                let name = name.clone();
                async move {
                    c.get_service(v1::GetServiceRequest { name, stale: false })
                        .await
                }
            })
            .await?;
    }
    let list = client
        .call("list the tasks", |mut c| {
            let service = service.clone();
            async move {
                c.list_tasks(v1::ListTasksRequest {
                    service,
                    stale: false,
                })
                .await
            }
        })
        .await?
        .tasks;
    let nodes = list_nodes(&client).await?;
    let names = node_names(&nodes);
    let views = tasks::views(&list, &names, args.all);
    let opts = PsOptions {
        all: args.all,
        no_trunc: args.no_trunc,
        now: time::now(),
    };
    let text = output::render(args.output, &views, || tasks::table(&list, &names, opts))?;
    io.print(&text)?;
    Ok(exit::OK)
}

/// Every node.
pub async fn list_nodes(client: &crate::client::Client) -> Result<Vec<v1::Node>, ClientError> {
    Ok(client
        .call("list the nodes", |mut c| async move {
            c.list_nodes(v1::ListNodesRequest::default()).await
        })
        .await?
        .nodes)
}
