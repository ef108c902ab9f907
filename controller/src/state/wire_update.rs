//! The wire forms of rollout settings and of a service's rollout status.

use berth_proto::v1;

use super::types::{FailureAction, RolloutState, UpdateConfig, UpdateOrder, UpdateStatus};

/// Rollout settings sent by a client: checked; an unset monitor takes the default.
pub fn update_config_from_wire(
    w: &v1::ServiceUpdateConfig,
    what: &str,
) -> Result<UpdateConfig, String> {
    let d = UpdateConfig::default();
    if !(0.0..=1.0).contains(&w.max_failure_ratio) {
        return Err(format!(
            "{what}.max_failure_ratio {} is not between 0 and 1",
            w.max_failure_ratio
        ));
    }
    let order = match v1::UpdateOrder::try_from(w.order) {
        Ok(v1::UpdateOrder::Unspecified) => d.order,
        Ok(v1::UpdateOrder::StopFirst) => UpdateOrder::StopFirst,
        Ok(v1::UpdateOrder::StartFirst) => UpdateOrder::StartFirst,
        Err(_) => return Err(format!("{what}.order {} is not an order", w.order)),
    };
    let failure_action = match v1::FailureAction::try_from(w.failure_action) {
        Ok(v1::FailureAction::Unspecified) => d.failure_action,
        Ok(v1::FailureAction::Pause) => FailureAction::Pause,
        Ok(v1::FailureAction::Continue) => FailureAction::Continue,
        Ok(v1::FailureAction::Rollback) => FailureAction::Rollback,
        Err(_) => {
            return Err(format!(
                "{what}.failure_action {} is not an action",
                w.failure_action
            ));
        }
    };
    Ok(UpdateConfig {
        parallelism: w.parallelism,
        delay_ms: w.delay_ms,
        order,
        monitor_ms: w.monitor_ms.unwrap_or(d.monitor_ms),
        failure_action,
        max_failure_ratio: w.max_failure_ratio,
    })
}

/// Rollout settings in their wire form.
pub fn update_config_to_wire(c: &UpdateConfig) -> v1::ServiceUpdateConfig {
    v1::ServiceUpdateConfig {
        parallelism: c.parallelism,
        delay_ms: c.delay_ms,
        order: match c.order {
            UpdateOrder::StopFirst => v1::UpdateOrder::StopFirst,
            UpdateOrder::StartFirst => v1::UpdateOrder::StartFirst,
        }
        .into(),
        monitor_ms: Some(c.monitor_ms),
        failure_action: match c.failure_action {
            FailureAction::Pause => v1::FailureAction::Pause,
            FailureAction::Continue => v1::FailureAction::Continue,
            FailureAction::Rollback => v1::FailureAction::Rollback,
        }
        .into(),
        max_failure_ratio: c.max_failure_ratio,
    }
}

/// A rollout's status in its wire form.
pub fn update_status_to_wire(u: &UpdateStatus) -> v1::ServiceUpdateStatus {
    let nanos = |t: i128| i64::try_from(t).unwrap_or(i64::MAX);
    v1::ServiceUpdateStatus {
        state: match u.state {
            RolloutState::Updating => v1::RolloutState::Updating,
            RolloutState::Paused => v1::RolloutState::Paused,
            RolloutState::Completed => v1::RolloutState::Completed,
            RolloutState::RollingBack => v1::RolloutState::RollingBack,
            RolloutState::RollbackPaused => v1::RolloutState::RollbackPaused,
            RolloutState::RolledBack => v1::RolloutState::RolledBack,
        }
        .into(),
        from_version: u.from_version,
        to_version: u.to_version,
        started_at: nanos(u.started_at),
        completed_at: u.completed_at.map_or(0, nanos),
        message: u.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_values_are_named() {
        let c = UpdateConfig {
            parallelism: 5,
            delay_ms: 100,
            order: UpdateOrder::StartFirst,
            monitor_ms: 2_000,
            failure_action: FailureAction::Rollback,
            max_failure_ratio: 0.25,
        };
        assert_eq!(
            update_config_from_wire(&update_config_to_wire(&c), "update_config"),
            Ok(c)
        );
        let defaults = update_config_from_wire(&Default::default(), "update_config").unwrap();
        // Zero values: parallelism 0 means all at once; the rest take Swarm's defaults.
        assert_eq!(
            defaults,
            UpdateConfig {
                parallelism: 0,
                ..UpdateConfig::default()
            }
        );
        let bad = v1::ServiceUpdateConfig {
            max_failure_ratio: 1.5,
            ..Default::default()
        };
        let e = update_config_from_wire(&bad, "rollback_config").unwrap_err();
        assert!(e.contains("rollback_config.max_failure_ratio 1.5"), "{e}");
    }
}
