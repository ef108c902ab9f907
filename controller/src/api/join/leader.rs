//! A join as the leader carries it out: check, confirm leadership, verify the token against
//! the stored one, sign the CSR, record an agent's node, answer.

use berth_proto::v1::{ControllerMember, JoinClusterRequest, JoinClusterResponse};
use tracing::info;

use super::JoinService;
use super::check::{Checked, check_controller_id, check_request, verify_token};
use super::error::JoinError;
use crate::api::control::ControlError;
use crate::api::store::{self, Written};
use crate::pki::{DEFAULT_LEAF_VALIDITY, Identity, PkiError, Role, StoredToken, random_id};
use crate::raft::{Expect, Op};
use crate::state::{Availability, Node, NodeResources, NodeStatus, keys};

/// How many fresh ids an agent join tries (a collision of 128 random bits never happens;
/// the write still expects the key to be absent).
const ID_ATTEMPTS: usize = 3;

impl JoinService {
    /// `JoinCluster` on the leader; [`ControlError::NotLeader`] elsewhere.
    pub(super) async fn join_local(
        &self,
        request: &JoinClusterRequest,
    ) -> Result<JoinClusterResponse, JoinError> {
        let checked = check_request(request)?;
        store::linearize(&self.raft).await?;
        let stored: Option<(u64, StoredToken)> =
            store::read(&self.reader, &keys::token(checked.role)).await?;
        verify_token(
            stored.as_ref().map(|(_, t)| t),
            &checked.token,
            checked.role,
        )?;
        let (node_id, cert_pem) = match checked.role {
            Role::Controller => self.join_controller(&checked, &request.csr_pem)?,
            Role::Agent => self.join_agent(&checked, &request.csr_pem).await?,
            Role::Admin => {
                return Err(JoinError::Invalid {
                    field: "role",
                    reason: "admins do not join".to_owned(),
                });
            }
        };
        info!(role = %checked.role, node = %node_id, name = %checked.name, advertise = %checked.advertise, "node joined");
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let controllers = membership
            .membership()
            .nodes()
            .map(|(id, node)| ControllerMember {
                id: *id,
                addr: node.addr.clone(),
            })
            .collect();
        let ca_key_pem = match checked.role {
            Role::Controller => self.ca.to_pem().1,
            Role::Agent | Role::Admin => String::new(),
        };
        Ok(JoinClusterResponse {
            node_id,
            cert_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            ca_key_pem,
            cluster_name: self.cluster.name.clone(),
            controllers,
            node_range: self.cluster.node_range.to_string(),
            node_prefix: u32::from(self.cluster.node_prefix),
        })
    }

    /// Signs the CSR for `role`/`id`.
    fn sign(&self, checked: &Checked, id: &str, csr_pem: &str) -> Result<String, JoinError> {
        let identity = Identity::new(checked.role, id).map_err(JoinError::Issue)?;
        self.ca
            .issue_for_csr(&identity, &checked.names, DEFAULT_LEAF_VALIDITY, csr_pem)
            .map_err(|e| match e {
                PkiError::InvalidCsr { .. } => JoinError::Csr(e),
                PkiError::InvalidInput { reason, .. } => JoinError::Invalid {
                    field: "hostnames",
                    reason,
                },
                other => JoinError::Issue(other),
            })
    }

    /// A controller keeps the Raft id it asked for, unless another address holds it.
    fn join_controller(
        &self,
        checked: &Checked,
        csr_pem: &str,
    ) -> Result<(String, String), JoinError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        check_controller_id(
            checked.controller_id,
            &checked.advertise,
            membership
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.addr.as_str())),
        )?;
        let id = checked.controller_id.to_string();
        let cert = self.sign(checked, &id, csr_pem)?;
        Ok((id, cert))
    }

    /// An agent gets a fresh id and a node record, written only if the id is new.
    async fn join_agent(
        &self,
        checked: &Checked,
        csr_pem: &str,
    ) -> Result<(String, String), JoinError> {
        for _ in 0..ID_ATTEMPTS {
            let id = random_id().map_err(JoinError::Issue)?;
            let cert = self.sign(checked, &id, csr_pem)?;
            let key = keys::node(&id);
            let node = Node {
                id: id.clone(),
                hostname: checked.name.clone(),
                address: checked.advertise.clone(),
                labels: Default::default(),
                resources: NodeResources::default(),
                status: NodeStatus::Unknown,
                availability: Availability::Active,
                last_seen: None,
                subnet: None,
                agent_version: None,
            };
            let op = Op::Put {
                value: store::encode(&key, &node)?,
                key,
                expect: Expect::Absent,
            };
            match store::write(&self.raft, op).await? {
                Written::Applied => return Ok((id, cert)),
                Written::Conflict { .. } => continue,
            }
        }
        Err(
            ControlError::InvalidWrite(format!("{ID_ATTEMPTS} fresh node ids were all taken"))
                .into(),
        )
    }
}
