//! A service's VIP and ingress ports, claimed in the same batch as its record
//! ([`crate::state::network`]), and released with it.

use std::collections::HashSet;

use ipnet::Ipv4Net;

use super::ControlService;
use super::error::ControlError;
use crate::api::store::{self, encode};
use crate::raft::{Expect, Op};
use crate::state::network::{self, ingress_key, kept_auto_port, vip_key};
use crate::state::{ClusterInfo, PortSpec, Protocol, Service, StateError, keys};

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

impl ControlService {
    /// The cluster's service range.
    async fn service_range(&self) -> Result<Ipv4Net, ControlError> {
        Ok(store::read::<ClusterInfo>(&self.reader, keys::CLUSTER)
            .await?
            .map_or_else(crate::state::default_service_range, |(_, c)| {
                c.service_range
            }))
    }

    /// Who claims `key`, with the claim's version.
    async fn claim(&self, key: &str) -> Result<Option<(u64, String)>, ControlError> {
        store::read::<String>(&self.reader, key).await
    }

    fn put_claim(key: String, name: &str) -> Result<Op, ControlError> {
        Ok(Op::Put {
            value: encode(&key, &name)?,
            key,
            expect: Expect::Absent,
        })
    }

    /// Gives `next` (the new record of a service whose record was `previous`) its VIP and
    /// ingress ports, and returns the claim writes that must commit with it.
    pub(super) async fn network_claims(
        &self,
        previous: Option<&Service>,
        next: &mut Service,
    ) -> Result<Vec<Op>, ControlError> {
        let name = next.spec.name.clone();
        let mut ops = Vec::new();
        if next.vip.is_none() {
            let range = self.service_range().await?;
            let mut attempt = 0;
            loop {
                let ip = network::vip_candidate(range, &name, attempt).ok_or_else(|| {
                    StateError::Exhausted {
                        service: name.clone(),
                        what: format!("address of the service range {range}"),
                        hint: "remove services you no longer need",
                    }
                })?;
                let key = vip_key(ip);
                match self.claim(&key).await? {
                    None => {
                        ops.push(Self::put_claim(key, &name)?);
                        next.vip = Some(ip);
                        break;
                    }
                    Some((_, owner)) if owner == name => {
                        next.vip = Some(ip);
                        break;
                    }
                    Some(_) => attempt += 1,
                }
            }
        }

        let explicit: HashSet<(u16, Protocol)> = next
            .spec
            .ports
            .iter()
            .filter_map(|p| Some((p.published?, p.protocol)))
            .collect();
        let mut taken: HashSet<(u16, Protocol)> = HashSet::new();
        let mut ingress = Vec::new();
        for p in next.spec.ports.iter().filter(|p| p.is_ingress()) {
            let published = match p.published {
                Some(h) => h,
                None => match kept_auto_port(previous, p.target, p.protocol)
                    .filter(|h| !explicit.contains(&(*h, p.protocol)))
                    .filter(|h| !taken.contains(&(*h, p.protocol)))
                {
                    Some(h) => h,
                    None => self.free_port(&name, p, &explicit, &taken).await?,
                },
            };
            taken.insert((published, p.protocol));
            let key = ingress_key(p.protocol, published);
            match self.claim(&key).await? {
                None => ops.push(Self::put_claim(key, &name)?),
                Some((_, owner)) if owner == name => {}
                Some((_, owner)) => {
                    return Err(StateError::PortTaken {
                        service: name,
                        port: published,
                        protocol: proto_name(p.protocol),
                        owner,
                    }
                    .into());
                }
            }
            ingress.push(PortSpec {
                published: Some(published),
                ..*p
            });
        }
        // A host-mode port may not be another service's ingress port: the mesh holds it
        // on every node.
        for p in next.spec.ports.iter().filter(|p| !p.is_ingress()) {
            let Some(h) = p.published else { continue };
            if let Some((_, owner)) = self.claim(&ingress_key(p.protocol, h)).await?
                && owner != name
            {
                return Err(StateError::PortTaken {
                    service: name,
                    port: h,
                    protocol: proto_name(p.protocol),
                    owner,
                }
                .into());
            }
        }
        if let Some(prev) = previous {
            for old in &prev.ingress {
                let Some(h) = old.published else { continue };
                if !taken.contains(&(h, old.protocol)) {
                    ops.extend(self.release(&ingress_key(old.protocol, h), &name).await?);
                }
            }
        }
        next.ingress = ingress;
        Ok(ops)
    }

    /// A free port of [`network::INGRESS_AUTO`] for `port` of service `name`.
    async fn free_port(
        &self,
        name: &str,
        port: &PortSpec,
        explicit: &HashSet<(u16, Protocol)>,
        taken: &HashSet<(u16, Protocol)>,
    ) -> Result<u16, ControlError> {
        let mut attempt = 0;
        loop {
            let h = network::port_candidate(name, port.target, port.protocol, attempt).ok_or_else(
                || StateError::Exhausted {
                    service: name.to_owned(),
                    what: format!(
                        "ingress port of {}-{}",
                        network::INGRESS_AUTO.start(),
                        network::INGRESS_AUTO.end()
                    ),
                    hint: "publish the port on a port of your choice",
                },
            )?;
            attempt += 1;
            let pair = (h, port.protocol);
            if explicit.contains(&pair) || taken.contains(&pair) {
                continue;
            }
            match self.claim(&ingress_key(port.protocol, h)).await? {
                None => return Ok(h),
                Some((_, owner)) if owner == name => return Ok(h),
                Some(_) => {}
            }
        }
    }

    /// The deletion of claim `key` if `name` holds it.
    async fn release(&self, key: &str, name: &str) -> Result<Option<Op>, ControlError> {
        Ok(match self.claim(key).await? {
            Some((version, owner)) if owner == name => Some(Op::Delete {
                key: key.to_owned(),
                expect: Expect::Version(version),
            }),
            _ => None,
        })
    }

    /// The deletions of every claim of `service`, for its removal.
    pub(super) async fn release_all(&self, service: &Service) -> Result<Vec<Op>, ControlError> {
        let name = &service.spec.name;
        let mut ops = Vec::new();
        if let Some(ip) = service.vip {
            ops.extend(self.release(&vip_key(ip), name).await?);
        }
        for p in &service.ingress {
            if let Some(h) = p.published {
                ops.extend(self.release(&ingress_key(p.protocol, h), name).await?);
            }
        }
        Ok(ops)
    }
}
