//! What a user's rollout action does to a service's record, as pure code: pause, resume,
//! undo to an earlier version, restart.

use super::{Applied, RolloutState, Service, ServiceSpec, StateError, UpdateStatus, apply_service};

/// A user's rollout action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    /// Choose no more tasks.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Bring back the spec of a version (`None`: the last one whose tasks differ).
    Undo(Option<u64>),
    /// Replace every task without a spec change.
    Restart,
}

/// Why an action does not apply.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Pause without a rollout going on.
    #[error("service {0} has no rollout in progress to pause (berth rollout status {0})")]
    NothingToPause(String),
    /// Resume without a pause.
    #[error("service {0}'s rollout is not paused")]
    NotPaused(String),
    /// Undo to a version the history does not have.
    #[error("service {service} has no version {version} to go back to; its history has {known}")]
    NoSuchVersion {
        /// The service.
        service: String,
        /// The version asked for.
        version: u64,
        /// The versions it has.
        known: String,
    },
    /// Undo with no earlier version that differs.
    #[error("service {0} has no earlier version whose tasks differ from the current ones")]
    NothingToUndo(String),
    /// The spec it would go back to is refused now.
    #[error(transparent)]
    State(#[from] StateError),
}

/// `current` after `action` at `now`.
pub fn rollout(
    current: &Service,
    action: RolloutAction,
    now: i128,
) -> Result<Applied, RolloutError> {
    let name = &current.spec.name;
    let with_status = |state: RolloutState, message: &str, restart_clock: bool| {
        let mut s = current.clone();
        if let Some(u) = &mut s.update {
            u.state = state;
            message.clone_into(&mut u.message);
            if restart_clock {
                u.started_at = now;
            }
        }
        Applied::Updated(s)
    };
    match action {
        RolloutAction::Pause => match current.update.as_ref().map(|u| u.state) {
            Some(RolloutState::Updating) => Ok(with_status(
                RolloutState::Paused,
                "update paused by a user",
                false,
            )),
            Some(RolloutState::RollingBack) => Ok(with_status(
                RolloutState::RollbackPaused,
                "rollback paused by a user",
                false,
            )),
            Some(RolloutState::Paused | RolloutState::RollbackPaused) => {
                Ok(Applied::Unchanged(current.clone()))
            }
            _ => Err(RolloutError::NothingToPause(name.clone())),
        },
        // Failures counted so far are forgiven: the rollout counts again from now.
        RolloutAction::Resume => match current.update.as_ref().map(|u| u.state) {
            Some(RolloutState::Paused) => {
                Ok(with_status(RolloutState::Updating, "update resumed", true))
            }
            Some(RolloutState::RollbackPaused) => Ok(with_status(
                RolloutState::RollingBack,
                "rollback resumed",
                true,
            )),
            _ => Err(RolloutError::NotPaused(name.clone())),
        },
        RolloutAction::Restart => {
            let spec = ServiceSpec {
                force_update: current.spec.force_update + 1,
                ..current.spec.clone()
            };
            Ok(apply_service(Some(current), spec, None, now)?)
        }
        RolloutAction::Undo(to) => {
            let target = match to {
                Some(v) => current
                    .history
                    .iter()
                    .find(|h| h.version == v)
                    .ok_or_else(|| RolloutError::NoSuchVersion {
                        service: name.clone(),
                        version: v,
                        known: current
                            .history
                            .iter()
                            .map(|h| h.version.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?,
                None => current
                    .history
                    .iter()
                    .rev()
                    .find(|h| !h.spec.same_tasks_as(&current.spec))
                    .ok_or_else(|| RolloutError::NothingToUndo(name.clone()))?,
            };
            // The replica count stays: an undo brings back what the tasks run.
            let spec = ServiceSpec {
                mode: current.spec.mode,
                ..target.spec.clone()
            };
            let from = target.version;
            match apply_service(Some(current), spec, None, now)? {
                Applied::Updated(mut s) => {
                    s.update = Some(UpdateStatus {
                        state: RolloutState::RollingBack,
                        from_version: current.version,
                        to_version: s.version,
                        started_at: now,
                        completed_at: None,
                        message: format!("undo to version {from}"),
                    });
                    Ok(Applied::Updated(s))
                }
                other => Ok(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{SpecVersion, UpdateConfig};

    fn service() -> Service {
        let spec = |image: &str| ServiceSpec {
            update_config: Some(UpdateConfig::default()),
            ..ServiceSpec::minimal("web", image, 3)
        };
        Service {
            spec: spec("web:3"),
            version: 3,
            created_at: 0,
            updated_at: 0,
            history: vec![
                SpecVersion {
                    version: 1,
                    spec: spec("web:1"),
                    replaced_at: 0,
                },
                SpecVersion {
                    version: 2,
                    spec: spec("web:2"),
                    replaced_at: 0,
                },
            ],
            vip: None,
            ingress: vec![],
            update: Some(UpdateStatus {
                state: RolloutState::Updating,
                from_version: 2,
                to_version: 3,
                started_at: 5,
                completed_at: None,
                message: String::new(),
            }),
        }
    }

    fn updated(a: Result<Applied, RolloutError>) -> Service {
        match a {
            Ok(Applied::Updated(s)) => s,
            other => panic!("an update: {other:?}"),
        }
    }

    #[test]
    fn pause_and_resume_move_the_state_and_refuse_what_does_not_apply() {
        let paused = updated(rollout(&service(), RolloutAction::Pause, 10));
        assert_eq!(paused.update.as_ref().unwrap().state, RolloutState::Paused);
        assert_eq!(paused.version, 3, "no new version");
        assert!(matches!(
            rollout(&paused, RolloutAction::Pause, 11),
            Ok(Applied::Unchanged(_))
        ));
        let resumed = updated(rollout(&paused, RolloutAction::Resume, 20));
        let u = resumed.update.unwrap();
        assert_eq!((u.state, u.started_at), (RolloutState::Updating, 20));
        let e = rollout(&service(), RolloutAction::Resume, 20).unwrap_err();
        assert_eq!(e.to_string(), "service web's rollout is not paused");
        let mut done = service();
        done.update.as_mut().unwrap().state = RolloutState::Completed;
        let e = rollout(&done, RolloutAction::Pause, 20).unwrap_err();
        assert!(e.to_string().contains("no rollout in progress"), "{e}");
    }

    #[test]
    fn undo_brings_back_a_version_as_a_rollback_and_restart_bumps_the_spec() {
        let back = updated(rollout(&service(), RolloutAction::Undo(None), 30));
        assert_eq!((back.version, back.spec.image.as_str()), (4, "web:2"));
        let u = back.update.unwrap();
        assert_eq!(
            (u.state, u.from_version, u.to_version),
            (RolloutState::RollingBack, 3, 4)
        );
        let first = updated(rollout(&service(), RolloutAction::Undo(Some(1)), 30));
        assert_eq!(first.spec.image, "web:1");
        let e = rollout(&service(), RolloutAction::Undo(Some(9)), 30).unwrap_err();
        assert_eq!(
            e.to_string(),
            "service web has no version 9 to go back to; its history has 1, 2"
        );
        let restarted = updated(rollout(&service(), RolloutAction::Restart, 40));
        assert_eq!((restarted.version, restarted.spec.force_update), (4, 1));
        assert!(!restarted.spec.same_tasks_as(&service().spec));
    }
}
