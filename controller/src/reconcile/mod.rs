//! The reconcilers (issue 5), as pure code: from the desired state (services) and the
//! observed one (tasks, nodes), what the leader should write so that they agree. Nothing here
//! does I/O; the leader's loop that runs them and commits their plans is still to come.
//!
//! - [`replicated`]: a replicated service's slots (create, restart under the policy, stop
//!   extra slots and duplicates, bound each slot's history).

pub mod replicated;
