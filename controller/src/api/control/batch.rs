//! `ApplyServices`: several services in one call, each applied as `ApplyService` would,
//! concurrently, so that their writes share Raft entries and the call costs one round trip.

use std::collections::BTreeSet;

use berth_proto::v1;
use tonic::Status;

use super::ControlService;
use super::error::ControlError;

/// The most services one call may apply.
pub const MAX_BATCH: usize = 1_000;

impl ControlService {
    /// `ApplyServices` on the leader. Fails as a whole only when this member is not the
    /// leader (the call is then forwarded; services applied meanwhile answer `unchanged`
    /// the second time) or the request is malformed.
    pub(super) async fn apply_many_local(
        &self,
        request: &v1::ApplyServicesRequest,
    ) -> Result<v1::ApplyServicesResponse, ControlError> {
        if request.services.len() > MAX_BATCH {
            return Err(ControlError::BadStream(format!(
                "{} services in one call; at most {MAX_BATCH}",
                request.services.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for r in &request.services {
            let name = r.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default();
            if !name.is_empty() && !seen.insert(name) {
                return Err(ControlError::BadStream(format!(
                    "service {name:?} is applied twice in one call"
                )));
            }
        }
        let answers =
            futures::future::join_all(request.services.iter().map(|r| self.apply_local(r))).await;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            let result = match answer {
                Ok(applied) => v1::apply_service_result::Result::Applied(applied),
                Err(e @ (ControlError::NotLeader { .. } | ControlError::NoLeader)) => {
                    return Err(e);
                }
                Err(e) => {
                    let status = Status::from(e);
                    v1::apply_service_result::Result::Failure(v1::ApplyFailure {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    })
                }
            };
            results.push(v1::ApplyServiceResult {
                result: Some(result),
            });
        }
        Ok(v1::ApplyServicesResponse { results })
    }
}
