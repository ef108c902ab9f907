//! The overlay between nodes (being written).
