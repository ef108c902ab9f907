//! Firewall back-ends (being written).
