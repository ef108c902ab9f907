//! Checks across services, after every file is read: service names, links and
//! `depends_on` naming services that exist, cycles, and ports published twice.

use std::collections::{BTreeMap, HashSet};

use super::ctx::Ctx;
use super::diag::Kind;
use super::model::ServiceModel;
use super::service::Refs;

/// Whether `s` is a DNS label: the controller's own rule for service names and link
/// aliases (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 characters).
pub use berth_controller::state::validate::is_dns_label;

/// A DNS label near `s` (lower case, `_` and `.` as `-`), to suggest.
fn dns_label_like(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_owned();
    out.truncate(63);
    out.trim_end_matches('-').to_owned()
}

impl Ctx<'_> {
    /// Checks one service's name and its own links and ports.
    pub(crate) fn check_service(&mut self, m: &ServiceModel, refs: &Refs<'_>) {
        let prefix = format!("services.{}", m.name);
        if !is_dns_label(&m.name) {
            let like = dns_label_like(&m.name);
            let help = if is_dns_label(&like) {
                format!(
                    "berth names services as DNS labels: lower-case letters, digits and inner '-', at most 63 characters; e.g. `{like}`"
                )
            } else {
                "berth names services as DNS labels: lower-case letters, digits and inner '-', at most 63 characters".to_owned()
            };
            self.error(
                Kind::ServiceName,
                refs.name.at,
                &prefix,
                format!(
                    "`{}` is not a valid service name",
                    super::ctx::shorten(&m.name)
                ),
                "not a DNS label",
                Some(help),
            );
        }
        let mut aliases = HashSet::new();
        for (l, node) in m.links.iter().zip(&refs.links) {
            let key = format!("{prefix}.links");
            if l.service == m.name {
                self.error(
                    Kind::Invalid,
                    node.at,
                    &key,
                    format!("service `{}` links to itself", m.name),
                    "links to itself",
                    Some("a service reaches its own tasks without a link; remove it".into()),
                );
            } else if !is_dns_label(&l.alias) {
                let at = self.narrow(node.at, &l.alias);
                self.error(
                    Kind::Invalid,
                    at,
                    &key,
                    format!("link alias `{}` is not a DNS label", l.alias),
                    "not a DNS label",
                    Some("an alias is lower-case letters, digits and inner '-'".into()),
                );
            } else if !aliases.insert(l.alias.as_str()) {
                let at = self.narrow(node.at, &l.alias);
                self.error(
                    Kind::Invalid,
                    at,
                    &key,
                    format!("link alias `{}` is given twice", l.alias),
                    "given twice",
                    Some("give each link its own alias: `service:alias`".into()),
                );
            }
        }
        let mut published = HashSet::new();
        for p in &m.ports {
            let Some(range) = p.published else { continue };
            for port in range.start..=range.end {
                if !published.insert((port, p.protocol)) {
                    self.error(
                        Kind::Port,
                        refs.ports.map_or(refs.name.at, |n| n.at),
                        &format!("{prefix}.ports"),
                        format!(
                            "service `{}` publishes port {port}/{} twice",
                            m.name,
                            match p.protocol {
                                super::model::Protocol::Tcp => "tcp",
                                super::model::Protocol::Udp => "udp",
                            }
                        ),
                        "port published twice",
                        Some("publish each node port once per protocol".into()),
                    );
                    break;
                }
            }
        }
    }

    /// Checks that links and `depends_on` name defined services, and that they form no
    /// cycle. `services` are all services read (also those with errors), by name.
    pub(crate) fn check_references(&mut self, services: &[(ServiceModel, Refs<'_>)]) {
        let names: Vec<&str> = services.iter().map(|(m, _)| m.name.as_str()).collect();
        let known: HashSet<&str> = names.iter().copied().collect();
        for (m, refs) in services {
            let prefix = format!("services.{}", m.name);
            let targets = m
                .links
                .iter()
                .map(|l| (l.service.as_str(), "links"))
                .zip(&refs.links)
                .chain(
                    m.depends_on
                        .iter()
                        .map(|d| (d.service.as_str(), "depends_on"))
                        .zip(&refs.depends_on),
                );
            for ((target, key), node) in targets {
                if known.contains(target) || (key == "links" && target == m.name) {
                    continue;
                }
                let suggestion = names
                    .iter()
                    .map(|n| (strsim::damerau_levenshtein(n, target), *n))
                    .filter(|(d, n)| *d <= (n.len() / 3).max(1))
                    .min_by_key(|(d, _)| *d);
                let help = match suggestion {
                    Some((_, n)) => {
                        format!("did you mean `{n}`? The services are: {}", names.join(", "))
                    }
                    None => format!("the services are: {}", names.join(", ")),
                };
                let at = self.narrow(node.at, target);
                self.error(
                    Kind::UnknownService,
                    at,
                    &format!("{prefix}.{key}"),
                    format!(
                        "`{prefix}.{key}` names `{target}`, which is not a service of these files"
                    ),
                    "unknown service",
                    Some(help),
                );
            }
        }
        self.check_cycles(services);
    }

    fn check_cycles(&mut self, services: &[(ServiceModel, Refs<'_>)]) {
        // Edges in file order: depends_on first, then links; each with its node.
        let index: BTreeMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (m.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<(usize, &str)>> = services
            .iter()
            .map(|(m, _)| {
                let mut e: Vec<(usize, &str)> = Vec::new();
                let deps = m
                    .depends_on
                    .iter()
                    .map(|d| (d.service.as_str(), "depends_on"));
                let links = m
                    .links
                    .iter()
                    .filter(|l| l.service != m.name)
                    .map(|l| (l.service.as_str(), "links"));
                for (t, key) in deps.chain(links) {
                    if let Some(&j) = index.get(t)
                        && !e.iter().any(|(k, _)| *k == j)
                    {
                        e.push((j, key));
                    }
                }
                e
            })
            .collect();
        // Depth-first search; each cycle is reported once, from the first service on it.
        let n = services.len();
        let mut state = vec![0u8; n]; // 0 new, 1 on the stack, 2 done
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for start in 0..n {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&(to, key)) = edges[node].get(*next) {
                    *next += 1;
                    match state[to] {
                        0 => {
                            state[to] = 1;
                            stack.push((to, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(s, _)| *s == to).unwrap_or(0);
                            let cycle: Vec<usize> = stack[pos..].iter().map(|(s, _)| *s).collect();
                            let mut canon = cycle.clone();
                            canon.sort_unstable();
                            if reported.insert(canon) {
                                self.report_cycle(services, &cycle, node, to, key);
                            }
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }

    fn report_cycle(
        &mut self,
        services: &[(ServiceModel, Refs<'_>)],
        cycle: &[usize],
        from: usize,
        to: usize,
        key: &str,
    ) {
        let mut names: Vec<&str> = cycle.iter().map(|&i| services[i].0.name.as_str()).collect();
        names.push(services[to].0.name.as_str());
        let text = names.join(" -> ");
        let (m, refs) = &services[from];
        let target = services[to].0.name.as_str();
        let node = if key == "depends_on" {
            m.depends_on
                .iter()
                .position(|d| d.service == target)
                .and_then(|i| refs.depends_on.get(i))
        } else {
            m.links
                .iter()
                .position(|l| l.service == target)
                .and_then(|i| refs.links.get(i))
        };
        let at = node.map_or(refs.name.at, |n| self.narrow(n.at, target));
        self.error(
            Kind::Cycle,
            at,
            &format!("services.{}.{key}", m.name),
            format!("dependency cycle: {text}"),
            "closes the cycle",
            Some(
                "`depends_on` and `links` must not lead back to a service; remove one of them"
                    .into(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["web", "a", "web-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "Web", "web_1", "-web", "web-", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert_eq!(dns_label_like("My_Service"), "my-service");
        assert_eq!(dns_label_like("_x_"), "x");
    }
}
