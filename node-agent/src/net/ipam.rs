//! IP address management (being written).
