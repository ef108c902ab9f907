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
        super::get_service(&client, &service).await?;
    }
    let list = super::list_tasks(&client, &service).await?;
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
