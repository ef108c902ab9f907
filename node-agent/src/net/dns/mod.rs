//! The node's DNS resolver for containers (being written).
