//! `deploy:` and the checks the controller makes on the same fields (mirrored here so that
//! bad input is refused before anything is sent).

use super::ctx::Ctx;
use super::diag::Kind;
use super::keys;
use super::model::{
    Deploy, FailureAction, Mode, Resource, RestartCondition, RestartPolicy, UpdateConfig,
    UpdateOrder,
};
use super::node::{Node, Value};

/// Most replicas a service may ask for (the controller's limit).
pub use berth_controller::state::validate::MAX_REPLICAS;

/// Checks a placement constraint as the controller does:
/// `node.(id|hostname|role|labels.KEY) (==|!=) VALUE`.
pub(crate) fn check_constraint(c: &str) -> Result<(), String> {
    let (lhs, rhs) = c
        .split_once("==")
        .or_else(|| c.split_once("!="))
        .ok_or_else(|| format!("`{c}` has no == or !="))?;
    if rhs.trim().is_empty() {
        return Err(format!("`{c}` has nothing after the operator"));
    }
    match lhs.trim() {
        "node.id" | "node.hostname" | "node.role" => Ok(()),
        l => match l.strip_prefix("node.labels.") {
            Some(k) if !k.is_empty() => Ok(()),
            _ => Err(format!(
                "unknown attribute `{l}` (expected node.id, node.hostname, node.role or node.labels.KEY)"
            )),
        },
    }
}

/// Parses a spread preference's label key from `node.labels.KEY`, as the controller does.
pub(crate) fn preference_key(p: &str) -> Option<String> {
    match p.trim().strip_prefix("node.labels.") {
        Some(k) if !k.is_empty() && !k.chars().any(char::is_whitespace) => Some(k.to_owned()),
        _ => None,
    }
}

impl Ctx<'_> {
    /// `deploy:`; `labels` go to `labels`.
    pub fn deploy(
        &mut self,
        node: &Node,
        key: &str,
        labels: &mut std::collections::BTreeMap<String, String>,
    ) -> Deploy {
        let mut d = Deploy::default();
        let Some(entries) = self.map(node, key) else {
            return d;
        };
        let mut global: Option<&Node> = None;
        let mut replicas: Option<(u32, &Node)> = None;
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "mode" => match self.string(v, &path).as_deref() {
                    Some("replicated") => {}
                    Some("global") => global = Some(v),
                    Some(m @ ("replicated-job" | "global-job")) => self.error(
                        Kind::Unsupported,
                        v.at,
                        &path,
                        format!("`{path}: {m}` cannot be honoured by berth"),
                        "not supported",
                        Some(
                            "berth runs long-lived services only; use `replicated` or `global`"
                                .into(),
                        ),
                    ),
                    Some(other) => self.error(
                        Kind::Invalid,
                        v.at,
                        &path,
                        format!("`{path}` is `{other}`; expected `replicated` or `global`"),
                        "unknown mode",
                        None,
                    ),
                    None => {}
                },
                "replicas" => {
                    if let Some(n) = self.u32(v, &path) {
                        if n > MAX_REPLICAS {
                            self.error(
                                Kind::Invalid,
                                v.at,
                                &path,
                                format!("`{path}` is {n}, more than the {MAX_REPLICAS} a service may have"),
                                "too many",
                                None,
                            );
                        } else {
                            replicas = Some((n, v));
                        }
                    }
                }
                "resources" => self.resources(v, &path, &mut d),
                "placement" => self.placement(v, &path, &mut d),
                "restart_policy" => d.restart_policy = self.restart_policy(v, &path),
                "update_config" | "rollback_config" => {
                    let c = self.update_config(v, &path);
                    if name == "update_config" {
                        d.update_config = Some(c);
                    } else {
                        d.rollback_config = Some(c);
                    }
                }
                "labels" => labels.extend(self.labels(v, &path)),
                _ => self.other_key(&keys::DEPLOY, k, &path),
            }
        }
        match (global, replicas) {
            (Some(_), Some((_, r))) => self.error(
                Kind::Invalid,
                r.at,
                &format!("{key}.replicas"),
                "`replicas` cannot be given with `mode: global`",
                "with mode: global",
                Some(
                    "a global service runs one task on each eligible node; remove `replicas`"
                        .into(),
                ),
            ),
            (Some(_), None) => d.mode = Mode::Global,
            (None, Some((n, _))) => d.mode = Mode::Replicated { replicas: n },
            (None, None) => {}
        }
        d
    }

    fn resources(&mut self, node: &Node, key: &str, d: &mut Deploy) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "limits" => d.resources.limits = self.resource(v, &path),
                "reservations" => d.resources.reservations = self.resource(v, &path),
                _ => self.other_key(&keys::RESOURCES, k, &path),
            }
        }
        let (l, r) = (d.resources.limits, d.resources.reservations);
        let mut above = |what: &str, res: String, lim: String| {
            self.error(
                Kind::Invalid,
                node.at,
                key,
                format!("`{key}`: the {what} reservation {res} is above the limit {lim}"),
                "reservation above limit",
                Some("a task may not reserve more than it may use".into()),
            );
        };
        if let (Some(lim), Some(res)) = (l.cpus, r.cpus)
            && res > lim
        {
            above("cpus", res.to_string(), lim.to_string());
        }
        if let (Some(lim), Some(res)) = (l.memory, r.memory)
            && res > lim
        {
            above("memory", format!("{res} bytes"), format!("{lim} bytes"));
        }
    }

    fn resource(&mut self, node: &Node, key: &str) -> Resource {
        let mut r = Resource::default();
        let Some(entries) = self.map(node, key) else {
            return r;
        };
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "cpus" => {
                    if let Some(c) = self.float(v, &path) {
                        if c > 0.0 {
                            r.cpus = Some(c);
                        } else {
                            self.error(
                                Kind::Invalid,
                                v.at,
                                &path,
                                format!("`{path}` is {c}; it must be more than 0"),
                                "not more than 0",
                                Some("leave it out for no limit".into()),
                            );
                        }
                    }
                }
                "memory" => r.memory = self.size(v, &path).filter(|m| *m > 0),
                _ => self.other_key(&keys::RESOURCE, k, &path),
            }
        }
        r
    }

    fn placement(&mut self, node: &Node, key: &str, d: &mut Deploy) {
        let Some(entries) = self.map(node, key) else {
            return;
        };
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "constraints" => {
                    for (c, n) in self.string_or_list(v, &path).unwrap_or_default() {
                        match check_constraint(&c) {
                            Ok(()) => d.placement.constraints.push(c.trim().to_owned()),
                            Err(why) => self.error(
                                Kind::Invalid,
                                n.at,
                                &path,
                                format!("`{path}`: {why}"),
                                "bad constraint",
                                Some("write e.g. `node.labels.disk == ssd`, `node.role != manager`, `node.hostname == web1`".into()),
                            ),
                        }
                    }
                }
                "preferences" => {
                    let Some(items) = self.seq(v, &path) else {
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{path}[{i}]");
                        let spread = match &item.value {
                            Value::Map(m) => match m.as_slice() {
                                [(pk, pv)] if pk.key_name() == "spread" => {
                                    self.string(pv, &format!("{ipath}.spread")).map(|s| (s, pv))
                                }
                                _ => {
                                    self.type_error(item, &ipath, "`spread: node.labels.KEY`");
                                    None
                                }
                            },
                            _ => {
                                self.type_error(item, &ipath, "`spread: node.labels.KEY`");
                                None
                            }
                        };
                        let Some((s, at)) = spread else { continue };
                        match preference_key(&s) {
                            Some(k) => d.placement.preferences.push(k),
                            None => self.error(
                                Kind::Invalid,
                                at.at,
                                &ipath,
                                format!("`{ipath}`: `{s}` is not a node label"),
                                "not node.labels.KEY",
                                Some("write `- spread: node.labels.zone`".into()),
                            ),
                        }
                    }
                }
                "max_replicas_per_node" => {
                    if let Some(n) = self.u32(v, &path) {
                        if n == 0 {
                            self.error(
                                Kind::Invalid,
                                v.at,
                                &path,
                                format!("`{path}` is 0, which would place no task"),
                                "places no task",
                                Some("give at least 1, or leave it out for no limit".into()),
                            );
                        } else {
                            d.placement.max_replicas_per_node = Some(n);
                        }
                    }
                }
                _ => self.other_key(&keys::PLACEMENT, k, &path),
            }
        }
    }

    fn restart_policy(&mut self, node: &Node, key: &str) -> Option<RestartPolicy> {
        let entries = self.map(node, key)?;
        let mut p = RestartPolicy::default();
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "condition" => match self.string(v, &path).as_deref() {
                    Some("none") => p.condition = RestartCondition::None,
                    Some("on-failure") => p.condition = RestartCondition::OnFailure,
                    Some("any") => p.condition = RestartCondition::Any,
                    Some(other) => self.error(
                        Kind::Invalid,
                        v.at,
                        &path,
                        format!("`{path}` is `{other}`; expected none, on-failure or any"),
                        "unknown condition",
                        None,
                    ),
                    None => {}
                },
                "delay" => p.delay = self.duration(v, &path),
                "window" => p.window = self.duration(v, &path),
                "max_attempts" => p.max_attempts = self.u32(v, &path),
                _ => self.other_key(&keys::RESTART_POLICY, k, &path),
            }
        }
        Some(p)
    }

    fn update_config(&mut self, node: &Node, key: &str) -> UpdateConfig {
        let mut c = UpdateConfig::default();
        let Some(entries) = self.map(node, key) else {
            return c;
        };
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "parallelism" => c.parallelism = self.u32(v, &path),
                "delay" => c.delay = self.duration(v, &path),
                "monitor" => c.monitor = self.duration(v, &path),
                "failure_action" => match self.string(v, &path).as_deref() {
                    Some("continue") => c.failure_action = Some(FailureAction::Continue),
                    Some("pause") => c.failure_action = Some(FailureAction::Pause),
                    Some("rollback") => c.failure_action = Some(FailureAction::Rollback),
                    Some(other) => self.error(
                        Kind::Invalid,
                        v.at,
                        &path,
                        format!("`{path}` is `{other}`; expected continue, pause or rollback"),
                        "unknown action",
                        None,
                    ),
                    None => {}
                },
                "max_failure_ratio" => match self.float(v, &path) {
                    Some(r) if (0.0..=1.0).contains(&r) => c.max_failure_ratio = Some(r),
                    Some(r) => self.error(
                        Kind::Invalid,
                        v.at,
                        &path,
                        format!("`{path}` is {r}; it must be between 0 and 1"),
                        "outside 0–1",
                        None,
                    ),
                    None => {}
                },
                "order" => match self.string(v, &path).as_deref() {
                    Some("stop-first") => c.order = Some(UpdateOrder::StopFirst),
                    Some("start-first") => c.order = Some(UpdateOrder::StartFirst),
                    Some(other) => self.error(
                        Kind::Invalid,
                        v.at,
                        &path,
                        format!("`{path}` is `{other}`; expected stop-first or start-first"),
                        "unknown order",
                        None,
                    ),
                    None => {}
                },
                _ => self.other_key(&keys::UPDATE_CONFIG, k, &path),
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_as_the_controller_reads_them() {
        for ok in [
            "node.labels.disk==ssd",
            "node.role != manager",
            "node.hostname == a",
            "node.id==x",
        ] {
            assert!(check_constraint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "node.labels.disk",
            "node.labels.==x",
            "node.zone==a",
            "node.role==",
            "disk=ssd",
        ] {
            assert!(check_constraint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preferences_name_a_node_label() {
        assert_eq!(preference_key("node.labels.zone").as_deref(), Some("zone"));
        assert_eq!(preference_key(" node.labels.rack "), Some("rack".into()));
        assert_eq!(preference_key("node.labels."), None);
        assert_eq!(preference_key("engine.labels.zone"), None);
        assert_eq!(preference_key("node.labels.a b"), None);
    }
}
