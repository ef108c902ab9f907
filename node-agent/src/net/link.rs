//! Links over netlink (being written).
