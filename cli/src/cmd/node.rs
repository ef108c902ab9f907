//! `berth node ls | inspect | update | drain | activate | rm`. A node is named by its id, a
//! unique prefix of its id, or its hostname.

use berth_proto::v1;

use super::Io;
use super::ps::list_nodes;
use crate::args::{Availability, GlobalArgs, NodeCommand, NodeRmArgs, NodeUpdateArgs};
use crate::client::{Client, ClientError};
use crate::error::CliError;
use crate::exit;
use crate::output::model::NodeView;
use crate::output::{self, OutputFormat, nodes, time};

/// The node `name` designates among `all`: an exact id, a hostname, or an id prefix,
/// matching one node.
pub fn find<'a>(all: &'a [v1::Node], name: &str) -> Result<&'a v1::Node, CliError> {
    if let Some(n) = all.iter().find(|n| n.id == name) {
        return Ok(n);
    }
    let matches: Vec<&v1::Node> = all
        .iter()
        .filter(|n| n.hostname == name || n.id.starts_with(name))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::Node(format!(
            "no node is called `{name}` (by id, id prefix or hostname); `berth node ls` lists them"
        ))),
        many => Err(CliError::Node(format!(
            "`{name}` matches {} nodes ({}); give the node's id",
            many.len(),
            many.iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Runs `berth node ...`.
pub async fn run(g: &GlobalArgs, cmd: &NodeCommand, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let all = list_nodes(&client).await?;
    match cmd {
        NodeCommand::Ls(args) => {
            let views: Vec<NodeView> = all.iter().map(NodeView::from).collect();
            let text = output::render(args.output, &views, || nodes::table(&all, time::now()))?;
            io.print(&text)?;
        }
        NodeCommand::Inspect(args) => {
            let view = NodeView::from(find(&all, &args.node)?);
            let text = match args.output {
                OutputFormat::Json => output::to_json(&view)?,
                OutputFormat::Text | OutputFormat::Yaml => output::to_yaml(&view)?,
            };
            io.print(&text)?;
        }
        NodeCommand::Update(args) => update(&client, &all, args, io).await?,
        NodeCommand::Drain(n) => {
            let args = NodeUpdateArgs {
                node: n.node.clone(),
                label_add: Vec::new(),
                label_rm: Vec::new(),
                availability: Some(Availability::Drain),
            };
            update(&client, &all, &args, io).await?;
        }
        NodeCommand::Activate(n) => {
            let args = NodeUpdateArgs {
                node: n.node.clone(),
                label_add: Vec::new(),
                label_rm: Vec::new(),
                availability: Some(Availability::Active),
            };
            update(&client, &all, &args, io).await?;
        }
        NodeCommand::Rm(args) => remove(&client, &all, args, io).await?,
    }
    Ok(exit::OK)
}

/// `berth node rm`: every node is tried; the command fails if any could not be removed.
async fn remove(
    client: &Client,
    all: &[v1::Node],
    args: &NodeRmArgs,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let mut failed = Vec::new();
    for name in &args.nodes {
        match remove_one(client, all, name, args.force).await {
            Ok(node) => io.print(&format!("{} ({}): removed\n", node.hostname, node.id))?,
            Err(e) if args.nodes.len() == 1 => return Err(e),
            Err(e) => {
                io.note(&format!("error: {e}\n"));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::SomeFailed {
            what: "remove",
            names: failed,
        })
    }
}

async fn remove_one(
    client: &Client,
    all: &[v1::Node],
    name: &str,
    force: bool,
) -> Result<v1::Node, CliError> {
    let node = find(all, name)?;
    let request = v1::RemoveNodeRequest {
        node: node.id.clone(),
        force,
    };
    let what = format!("remove node {name}");
    let result = client
        .call(&what, |mut c| {
            let request = request.clone();
            async move { c.remove_node(request).await }
        })
        .await;
    match result {
        Ok(response) => Ok(response.node.unwrap_or_else(|| node.clone())),
        // The controller's own words say what to do (drain, stop the agent, --force).
        Err(ClientError::Call {
            code: tonic::Code::FailedPrecondition | tonic::Code::NotFound,
            message,
            ..
        }) => Err(CliError::Node(format!("{what}: {message}"))),
        Err(e) => Err(e.into()),
    }
}

async fn update(
    client: &Client,
    all: &[v1::Node],
    args: &NodeUpdateArgs,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let node = find(all, &args.node)?;
    let request = v1::UpdateNodeRequest {
        node: node.id.clone(),
        label_add: args.label_add.iter().cloned().collect(),
        label_rm: args.label_rm.clone(),
        availability: match args.availability {
            None => v1::NodeAvailability::Unspecified,
            Some(Availability::Active) => v1::NodeAvailability::Active,
            Some(Availability::Pause) => v1::NodeAvailability::Pause,
            Some(Availability::Drain) => v1::NodeAvailability::Drain,
        } as i32,
    };
    let response = client
        .call(&format!("update node {}", args.node), |mut c| {
            let request = request.clone();
            async move { c.update_node(request).await }
        })
        .await?;
    let after = response.node.unwrap_or_default();
    let view = NodeView::from(&after);
    io.print(&format!(
        "{} ({}): {} availability={} labels={}\n",
        view.hostname,
        view.id,
        if response.changed {
            "updated"
        } else {
            "unchanged"
        },
        view.availability,
        view.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<v1::Node> {
        ["abc123", "abd456", "xyz789"]
            .iter()
            .enumerate()
            .map(|(i, id)| v1::Node {
                id: (*id).into(),
                hostname: format!("h{i}"),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_node_is_found_by_id_hostname_or_prefix() {
        let all = nodes();
        assert_eq!(find(&all, "abd456").expect("id").id, "abd456");
        assert_eq!(find(&all, "h2").expect("hostname").id, "xyz789");
        assert_eq!(find(&all, "xy").expect("prefix").id, "xyz789");
        let err = find(&all, "ab").expect_err("ambiguous");
        assert!(err.to_string().contains("matches 2 nodes"), "{err}");
        assert!(find(&all, "nope").is_err());
    }
}
