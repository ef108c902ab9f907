//! The reconcilers (issue 5), as pure code: from the desired state (services) and the
//! observed one (tasks, nodes), what the leader should write so that they agree. Nothing here
//! does I/O; the leader's loop that runs them and commits their plans is
//! [`crate::orchestrator`].
//!
//! - [`replicated`]: a replicated service's slots (create, restart under the policy, stop
//!   extra slots and duplicates, bound each slot's history);
//! - [`global`]: a global service's task on every eligible node;
//! - [`nodes`]: what a node that is down, gone or drained does to its tasks;
//! - [`update`]: a rollout: which outdated tasks to replace now, and how it goes.

pub mod global;
pub mod nodes;
pub mod replicated;
pub mod update;
