//! Published ports (being written).
