//! Joins over real TLS.
