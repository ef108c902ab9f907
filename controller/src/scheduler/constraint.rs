//! Placement constraints evaluated on a node. The grammar and its parser are
//! [`crate::state::validate::parse_constraint`]'s, so that what apply accepts is exactly
//! what the scheduler understands.

use crate::state::Node;
use crate::state::validate::{Constraint, ConstraintAttribute, parse_constraint};

/// What `node.role` is on every node record: nodes are agents, which Swarm calls workers.
/// Controllers are not nodes and run no tasks.
const NODE_ROLES: [&str; 2] = ["agent", "worker"];

/// Parses a service's constraints; the error is the first bad one's, in words.
pub(super) fn parse_all(constraints: &[String]) -> Result<Vec<Constraint>, String> {
    constraints.iter().map(|c| parse_constraint(c)).collect()
}

/// Whether `node` satisfies `c`. Values compare without regard to ASCII case, as in Swarm;
/// a node without the label satisfies `!=` and not `==`.
pub fn satisfies(node: &Node, c: &Constraint) -> bool {
    let matched = match &c.attribute {
        ConstraintAttribute::Id => node.id.eq_ignore_ascii_case(&c.value),
        ConstraintAttribute::Hostname => node.hostname.eq_ignore_ascii_case(&c.value),
        ConstraintAttribute::Role => NODE_ROLES.iter().any(|r| r.eq_ignore_ascii_case(&c.value)),
        ConstraintAttribute::Label(key) => node
            .labels
            .get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case(&c.value)),
    };
    matched == c.equal
}

/// Whether `node` satisfies every one of `constraints`.
pub fn satisfies_all(node: &Node, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| satisfies(node, c))
}
