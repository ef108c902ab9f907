//! Moving the node network to the subnet the controller allocated ([`NodeNet::ensure_subnet`]):
//! the address table, the bridge's address and the network's own firewall rules follow it,
//! as long as no container holds an address in the old one.

use std::path::Path;

use ipnet::Ipv4Net;
use tracing::info;

use super::{Links, NetConfig, NetError, NodeNet, runtime};
use crate::net::ipam::Ipam;

/// What [`NodeNet::ensure_subnet`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetChange {
    /// The bridge already had the subnet.
    Unchanged,
    /// The bridge did not exist and was created.
    Created,
    /// The bridge had another subnet, held by no container, and was re-created.
    Replaced {
        /// The subnet it had.
        old: Ipv4Net,
    },
}

impl NodeNet {
    /// Opens the node network whose state lives in `dir` with `config`, first making its
    /// subnet `config.subnet`: the address table is moved to it, and the bridge created with
    /// the subnet's first address, or re-created if it has another subnet (its old network
    /// rules removed, the new ones set up). Nothing changes if the bridge already has the
    /// subnet. A subnet still in use (a container holds an address in it) is an error naming
    /// both subnets, and nothing is changed.
    pub fn ensure_subnet(
        dir: &Path,
        config: NetConfig,
    ) -> Result<(NodeNet, SubnetChange), NetError> {
        config.validate()?;
        let requested = config.subnet;
        let table_was = Ipam::retarget(&dir.join("ipam.json"), requested)?;
        let net = NodeNet::open(dir, config)?;
        let cfg = net.config.clone();
        let gateway = Ipv4Net::new(cfg.gateway(), requested.prefix_len())
            .map_err(|e| NetError::Config(e.to_string()))?;
        let rt = runtime()?;
        let host = rt.block_on(async { Links::spawn() })?;
        let bridge_had = rt.block_on(host.ipv4_addresses_of(&cfg.bridge))?;
        let change = match bridge_had {
            Some(addrs) if addrs.contains(&gateway) => SubnetChange::Unchanged,
            None => SubnetChange::Created,
            Some(addrs) => {
                let old = addrs
                    .first()
                    .map(|a| a.trunc())
                    .or(table_was)
                    .unwrap_or(requested);
                let held = net.ipam.allocations()?.len();
                if held > 0 {
                    return Err(NetError::BridgeInUse {
                        bridge: cfg.bridge.clone(),
                        current: old,
                        requested,
                        containers: held,
                    });
                }
                rt.block_on(host.delete(&cfg.bridge))?;
                SubnetChange::Replaced { old }
            }
        };
        if change != SubnetChange::Unchanged {
            // Rules of an earlier subnet of this bridge (also when the bridge itself was
            // deleted by hand): the new ones are set up with the bridge below.
            net.firewall.remove_network(&cfg.rules())?;
        }
        net.ensure_node(&rt, &host)?;
        if change != SubnetChange::Unchanged {
            info!(bridge = cfg.bridge, subnet = %requested, ?change, "node network subnet set");
        }
        Ok((net, change))
    }
}
