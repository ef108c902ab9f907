//! Checks of a service spec before it is committed: every error names the service, the
//! field and what is wrong.

use std::collections::HashSet;

use super::StateError;
use super::types::{ServiceMode, ServiceSpec};

/// Most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 10_000;

/// Whether `s` is a DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS host name: dot-separated labels of letters, digits and inner
/// hyphens, each 1 to 63 characters, at most 253 in all.
pub fn is_host_name(s: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok)
}

/// The node attribute a placement constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintAttribute {
    /// `node.id`.
    Id,
    /// `node.hostname`.
    Hostname,
    /// `node.role`.
    Role,
    /// `node.labels.KEY`.
    Label(String),
}

/// A placement constraint, parsed: `attribute == value` or `attribute != value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// What it looks at.
    pub attribute: ConstraintAttribute,
    /// `==` (true) or `!=` (false).
    pub equal: bool,
    /// The value compared with (trimmed).
    pub value: String,
}

/// Parses a placement constraint: `node.(id|hostname|role|labels.KEY) (==|!=) VALUE`.
pub fn parse_constraint(c: &str) -> Result<Constraint, String> {
    let ((lhs, rhs), equal) = match c.split_once("==") {
        Some(split) => (split, true),
        None => (
            c.split_once("!=")
                .ok_or_else(|| format!("{c:?} has no == or !="))?,
            false,
        ),
    };
    let (lhs, rhs) = (lhs.trim(), rhs.trim());
    if rhs.is_empty() {
        return Err(format!("{c:?} has nothing after the operator"));
    }
    let attribute = match lhs {
        "node.id" => ConstraintAttribute::Id,
        "node.hostname" => ConstraintAttribute::Hostname,
        "node.role" => ConstraintAttribute::Role,
        l => match l.strip_prefix("node.labels.") {
            Some(k) if !k.is_empty() => ConstraintAttribute::Label(k.to_owned()),
            _ => {
                return Err(format!(
                    "{c:?}: unknown attribute {l:?} (expected node.id, node.hostname, node.role or node.labels.KEY)"
                ));
            }
        },
    };
    Ok(Constraint {
        attribute,
        equal,
        value: rhs.to_owned(),
    })
}

/// Checks a placement constraint: `node.(id|hostname|role|labels.KEY) (==|!=) VALUE`.
pub fn check_constraint(c: &str) -> Result<(), String> {
    parse_constraint(c).map(|_| ())
}

/// Parses a placement preference, `spread: node.labels.KEY` or plain `node.labels.KEY`,
/// into the label's key.
pub fn parse_preference(p: &str) -> Result<String, String> {
    let t = p.trim();
    let t = t.strip_prefix("spread:").map_or(t, str::trim_start);
    match t.strip_prefix("node.labels.") {
        Some(k) if !k.is_empty() && !k.chars().any(char::is_whitespace) => Ok(k.to_owned()),
        _ => Err(format!(
            "{p:?} is not a preference (expected \"spread: node.labels.KEY\" or \"node.labels.KEY\")"
        )),
    }
}

/// Checks a spec; the first problem found is the error.
pub fn validate_spec(spec: &ServiceSpec) -> Result<(), StateError> {
    let bad = |field: &str, reason: String| StateError::Invalid {
        service: spec.name.clone(),
        field: field.to_owned(),
        reason,
    };
    if !is_dns_label(&spec.name) {
        return Err(bad(
            "name",
            "must be lower-case letters, digits and '-', not starting or ending with '-', at most 63 characters".into(),
        ));
    }
    if spec.image.trim().is_empty() || spec.image.chars().any(char::is_whitespace) {
        return Err(bad(
            "image",
            format!("{:?} is not an image reference", spec.image),
        ));
    }
    if let ServiceMode::Replicated { replicas } = spec.mode
        && replicas > MAX_REPLICAS
    {
        return Err(bad(
            "replicas",
            format!("{replicas} is more than the {MAX_REPLICAS} a service may have"),
        ));
    }
    for e in &spec.env {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() && !k.contains('\0') => {}
            _ => return Err(bad("environment", format!("{e:?} is not KEY=VALUE"))),
        }
    }
    let mut published = HashSet::new();
    for p in &spec.ports {
        if p.target == 0 {
            return Err(bad("ports", "target port 0 is not a port".into()));
        }
        if let Some(h) = p.published {
            if h == 0 {
                return Err(bad("ports", "published port 0 is not a port".into()));
            }
            if !published.insert((h, p.protocol)) {
                return Err(bad(
                    "ports",
                    format!("port {h}/{:?} is published twice", p.protocol),
                ));
            }
        }
    }
    let mut aliases = HashSet::new();
    for l in &spec.links {
        if !is_dns_label(&l.service) {
            return Err(bad(
                "links",
                format!("{:?} is not a service name", l.service),
            ));
        }
        if l.service == spec.name {
            return Err(bad("links", "a service cannot link to itself".into()));
        }
        if !is_dns_label(&l.alias) || !aliases.insert(l.alias.as_str()) {
            return Err(bad(
                "links",
                format!("alias {:?} is not a DNS label or is given twice", l.alias),
            ));
        }
    }
    let r = &spec.resources;
    for (field, v) in [
        ("cpus limit", r.cpus_limit),
        ("cpus reservation", r.cpus_reserved),
    ] {
        if let Some(c) = v
            && (!c.is_finite() || c <= 0.0)
        {
            return Err(bad("resources", format!("{field} {c} must be more than 0")));
        }
    }
    if let (Some(l), Some(res)) = (r.cpus_limit, r.cpus_reserved)
        && res > l
    {
        return Err(bad(
            "resources",
            format!("cpus reservation {res} is above the limit {l}"),
        ));
    }
    if let (Some(l), Some(res)) = (r.memory_limit, r.memory_reserved)
        && res > l
    {
        return Err(bad(
            "resources",
            format!("memory reservation {res} is above the limit {l}"),
        ));
    }
    for c in &spec.constraints {
        check_constraint(c).map_err(|reason| bad("constraints", reason))?;
    }
    if spec.max_replicas_per_node == Some(0) {
        return Err(bad(
            "max_replicas_per_node",
            "0 would place no task: give at least 1, or leave it out for no limit".into(),
        ));
    }
    for p in &spec.preferences {
        parse_preference(p).map_err(|reason| bad("preferences", reason))?;
    }
    Ok(())
}
