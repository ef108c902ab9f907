//! The calls as this member carries them out when it is the leader (or for a stale read):
//! read the local store, decide with [`crate::state`], write one batch through Raft. A member
//! that is not the leader answers [`ControlError::NotLeader`] and the handler forwards the call.
//!
//! Reads confirm the leadership first (`ensure_linearizable`, a heartbeat round to a quorum,
//! shared by concurrent reads: `api/linearizer.rs`).
//! Writes do not: they are optimistic. The local copy may lag the leader's latest commits by
//! an instant, but every write carries the version it read (`Expect`), so a write decided on a
//! stale read fails its check in the state machine and is decided again on a fresh read (once
//! our own entry is applied, the local copy holds everything committed before it). Only an
//! answer that writes nothing — "unchanged", a stale-version or not-found error — is confirmed
//! on a linearized read before it is given.

use std::time::{SystemTime, UNIX_EPOCH};

use berth_proto::v1;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use super::ControlService;
use super::error::ControlError;
use crate::api::store::{self, Written, encode};
use crate::raft::{Expect, Op};
use crate::state::{self, Applied, Node, Service, StateError, Task, keys, wire};

/// How many read-decide-write rounds an apply or a removal tries when concurrent writes
/// to the same key win the race.
pub(super) const WRITE_ATTEMPTS: usize = 5;

/// A decoded record with its store version.
type Versioned<T> = (u64, T);

/// Now, in Unix nanoseconds.
fn now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

impl ControlService {
    /// Makes sure this member is the leader and has applied everything committed before
    /// the call, so that a read of the local store is linearizable.
    pub(super) async fn linearize(&self) -> Result<(), ControlError> {
        self.linearizer.linearize().await
    }

    /// Linearizes unless the caller accepts a stale read.
    async fn prepare_read(&self, stale: bool) -> Result<(), ControlError> {
        if stale {
            Ok(())
        } else {
            self.linearize().await
        }
    }

    /// Reads and decodes one record from the local store.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, ControlError> {
        store::read(&self.reader, key).await
    }

    /// Reads and decodes every record under `prefix` from the local store, in key order.
    pub(super) async fn list<T: DeserializeOwned>(
        &self,
        prefix: &'static str,
    ) -> Result<Vec<T>, ControlError> {
        store::list(&self.reader, prefix).await
    }

    /// `ApplyService` on the leader.
    pub(super) async fn apply_local(
        &self,
        request: &v1::ApplyServiceRequest,
    ) -> Result<v1::ApplyServiceResponse, ControlError> {
        let wire_spec = request.spec.as_ref().ok_or(ControlError::MissingSpec)?;
        let spec = wire::spec_from_wire(wire_spec)?;
        let name = spec.name.clone();
        self.update_service(&name, |current| {
            Ok(state::apply_service(
                current,
                spec.clone(),
                request.expected_version,
                now(),
            )?)
        })
        .await
    }

    /// `ScaleService` on the leader: a new spec version with only `replicas` changed.
    pub(super) async fn scale_local(
        &self,
        request: &v1::ScaleServiceRequest,
    ) -> Result<v1::ApplyServiceResponse, ControlError> {
        self.update_service(&request.name, |current| {
            let current = current.ok_or_else(|| ControlError::NotFound(request.name.clone()))?;
            let spec = state::scale_spec(&current.spec, request.replicas)?;
            Ok(state::apply_service(
                Some(current),
                spec,
                request.expected_version,
                now(),
            )?)
        })
        .await
    }

    /// `RolloutService` on the leader.
    pub(super) async fn rollout_local(
        &self,
        request: &v1::RolloutServiceRequest,
    ) -> Result<v1::ApplyServiceResponse, ControlError> {
        use state::rollout::{RolloutAction as A, RolloutError};
        let action = match v1::RolloutAction::try_from(request.action) {
            Ok(v1::RolloutAction::Pause) => A::Pause,
            Ok(v1::RolloutAction::Resume) => A::Resume,
            Ok(v1::RolloutAction::Restart) => A::Restart,
            Ok(v1::RolloutAction::Undo) => {
                A::Undo((request.to_version != 0).then_some(request.to_version))
            }
            _ => {
                return Err(ControlError::Rollout(format!(
                    "{} is not a rollout action (pause, resume, undo, restart)",
                    request.action
                )));
            }
        };
        self.update_service(&request.name, |current| {
            let current = current.ok_or_else(|| ControlError::NotFound(request.name.clone()))?;
            state::rollout::rollout(current, action, now()).map_err(|e| match e {
                RolloutError::State(s) => ControlError::State(s),
                other => ControlError::Rollout(other.to_string()),
            })
        })
        .await
    }

    /// One read-decide-write round of the service `name`, repeated while concurrent writes
    /// win the race. `decide` sees the current service (if any) and says what to store.
    async fn update_service(
        &self,
        name: &str,
        decide: impl Fn(Option<&Service>) -> Result<Applied, ControlError>,
    ) -> Result<v1::ApplyServiceResponse, ControlError> {
        let key = keys::service(name);
        let mut linearized = false;
        for attempt in 1..=WRITE_ATTEMPTS {
            let current: Option<Versioned<Service>> = self.get(&key).await?;
            let applied = decide(current.as_ref().map(|(_, s)| s));
            if !linearized && matches!(applied, Ok(Applied::Unchanged(_)) | Err(_)) {
                // Nothing to write: confirm on a linearized read before answering.
                self.linearize().await?;
                linearized = true;
                continue;
            }
            let (mut service, outcome) = match applied? {
                Applied::Created(s) => (s, "created"),
                Applied::Updated(s) => (s, "updated"),
                Applied::Unchanged(s) => {
                    return Ok(v1::ApplyServiceResponse {
                        service: Some(wire::service_to_wire(&s)),
                        outcome: "unchanged".to_owned(),
                    });
                }
            };
            let claims = self
                .network_claims(current.as_ref().map(|(_, s)| s), &mut service)
                .await?;
            let expect = current.map_or(Expect::Absent, |(v, _)| Expect::Version(v));
            let mut ops = vec![Op::Put {
                key: key.clone(),
                value: encode(&key, &service)?,
                expect,
            }];
            ops.extend(claims);
            match store::propose_batch(&self.proposer, ops).await? {
                Written::Applied => {
                    info!(service = %name, version = service.version, outcome, "service applied");
                    return Ok(v1::ApplyServiceResponse {
                        service: Some(wire::service_to_wire(&service)),
                        outcome: outcome.to_owned(),
                    });
                }
                Written::Conflict { actual } => {
                    debug!(service = %name, attempt, ?expect, ?actual, "write lost a race; reading again");
                }
            }
        }
        Err(ControlError::Contended {
            key,
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// `RemoveService` on the leader.
    pub(super) async fn remove_local(
        &self,
        request: &v1::RemoveServiceRequest,
    ) -> Result<v1::RemoveServiceResponse, ControlError> {
        let key = keys::service(&request.name);
        let mut linearized = false;
        for attempt in 1..=WRITE_ATTEMPTS {
            let found = self.get::<Service>(&key).await?;
            let refused = match &found {
                None => true,
                Some((_, service)) => request
                    .expected_version
                    .is_some_and(|expected| expected != service.version),
            };
            if refused && !linearized {
                // Nothing to write: confirm on a linearized read before answering.
                self.linearize().await?;
                linearized = true;
                continue;
            }
            let Some((kv_version, service)) = found else {
                return Err(ControlError::NotFound(request.name.clone()));
            };
            if let Some(expected) = request.expected_version
                && expected != service.version
            {
                return Err(StateError::StaleVersion {
                    service: request.name.clone(),
                    expected,
                    actual: service.version,
                }
                .into());
            }
            let mut ops = vec![Op::Delete {
                key: key.clone(),
                expect: Expect::Version(kv_version),
            }];
            ops.extend(self.release_all(&service).await?);
            match store::propose_batch(&self.proposer, ops).await? {
                Written::Applied => {
                    info!(service = %request.name, version = service.version, "service removed");
                    return Ok(v1::RemoveServiceResponse {
                        service: Some(wire::service_to_wire(&service)),
                    });
                }
                Written::Conflict { actual } => {
                    debug!(service = %request.name, attempt, ?actual, "removal lost a race; reading again");
                }
            }
        }
        Err(ControlError::Contended {
            key,
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// `GetService` on the leader, or anywhere when stale.
    pub(super) async fn get_local(
        &self,
        request: &v1::GetServiceRequest,
    ) -> Result<v1::GetServiceResponse, ControlError> {
        self.prepare_read(request.stale).await?;
        let key = keys::service(&request.name);
        let (_, service) = self
            .get::<Service>(&key)
            .await?
            .ok_or_else(|| ControlError::NotFound(request.name.clone()))?;
        Ok(v1::GetServiceResponse {
            service: Some(wire::service_to_wire(&service)),
        })
    }

    /// `ListServices` on the leader, or anywhere when stale.
    pub(super) async fn list_services_local(
        &self,
        request: &v1::ListServicesRequest,
    ) -> Result<v1::ListServicesResponse, ControlError> {
        self.prepare_read(request.stale).await?;
        let services: Vec<Service> = self.list(keys::SERVICES).await?;
        Ok(v1::ListServicesResponse {
            services: services.iter().map(wire::service_to_wire).collect(),
        })
    }

    /// `ListTasks` on the leader, or anywhere when stale.
    pub(super) async fn list_tasks_local(
        &self,
        request: &v1::ListTasksRequest,
    ) -> Result<v1::ListTasksResponse, ControlError> {
        self.prepare_read(request.stale).await?;
        let tasks: Vec<Task> = self.list(keys::TASKS).await?;
        Ok(v1::ListTasksResponse {
            tasks: tasks
                .iter()
                .filter(|t| request.service.is_empty() || t.service == request.service)
                .map(wire::task_to_wire)
                .collect(),
        })
    }

    /// `ListNodes` on the leader, or anywhere when stale.
    pub(super) async fn list_nodes_local(
        &self,
        request: &v1::ListNodesRequest,
    ) -> Result<v1::ListNodesResponse, ControlError> {
        self.prepare_read(request.stale).await?;
        let nodes: Vec<Node> = self.list(keys::NODES).await?;
        Ok(v1::ListNodesResponse {
            nodes: nodes.iter().map(wire::node_to_wire).collect(),
        })
    }
}
