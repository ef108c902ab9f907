//! `berth node ls | inspect | update | drain | activate`. A node is named by its id, a
//! unique prefix of its id, or its hostname.

use berth_proto::v1;

use super::Io;
use super::ps::list_nodes;
use crate::args::{Availability, GlobalArgs, NodeCommand, NodeUpdateArgs};
use crate::client::Client;
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
    }
    Ok(exit::OK)
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
