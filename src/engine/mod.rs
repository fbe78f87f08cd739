//! The sans-IO engine: thresholds, correlation, chronicles, patterns, rollups.
//!
//! It never reads a clock, spawns, sleeps or does IO; `now` is passed in on every call and
//! events are pulled with `poll_event`. (Implementation being built: see the Engine issue;
//! this is the API contract the shell codes against.)

pub mod events;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

pub use events::*;

use crate::config::EngineSettings;
use crate::model::{Reading, Timestamp};

/// Everything the engine must keep across restarts, as one serde value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {}

pub struct Engine {
    settings: EngineSettings,
    events: VecDeque<Event>,
    counters: NoiseCounters,
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Self {
        Self { settings, events: VecDeque::new(), counters: NoiseCounters::default() }
    }

    /// New thresholds/zones/devices; open incidents, patterns and history are kept.
    pub fn reconfigure(&mut self, settings: EngineSettings) {
        self.settings = settings;
    }

    pub fn handle_reading(&mut self, now: Timestamp, reading: &Reading) {
        let _ = (now, reading, &self.settings);
    }

    /// Advances timers (breach `for` holds, `clear_hold`, rate limits, pattern windows).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let _ = now;
    }

    /// When `handle_timeout` should next be called, if anything is pending.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        None
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn export_state(&self) -> EngineState {
        EngineState::default()
    }

    pub fn import_state(&mut self, state: EngineState) {
        let _ = state;
    }

    pub fn counters(&self) -> NoiseCounters {
        self.counters
    }

    /// Open incidents as they stand now, each with its chronicle so far (for `status`).
    pub fn open_incidents(&self) -> Vec<IncidentEvent> {
        Vec::new()
    }

    pub fn active_patterns(&self) -> Vec<PatternEvent> {
        Vec::new()
    }
}
