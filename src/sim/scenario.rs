//! Scenario (being written).
