//! Unit tests of the join checks.
