//! The sans-IO engine: thresholds, correlation, chronicles, patterns. (Being built: see the
//! Engine issue.) It never reads a clock, spawns, sleeps or does IO; `now` is passed in.

pub mod events;

pub use events::*;
