//! Simulator configuration (being written).
